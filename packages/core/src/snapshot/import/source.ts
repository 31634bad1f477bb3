/**
 * Where an import reads from: a local file or folder, or an object (or a "folder": a key prefix)
 * in an S3 bucket, possibly on another endpoint. Everything is streamed; nothing is downloaded first.
 */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { EtcdRecoverError } from '../../errors.js';
import type { ObjectStore } from '../../store/object-store.js';

export interface SourceFile {
  /** Base name. */
  name: string;
  /** Full description: a path or an s3:// URL. */
  where: string;
  size?: number;
  mtime?: Date;
  open(signal?: AbortSignal): AsyncIterable<Buffer>;
}

export interface ImportSource {
  /** What the operator named, e.g. /backups/etcd or s3://bucket/key. */
  description: string;
  /** Base name of the file or folder. */
  name: string;
  mtime?: Date;
  /** A single file, or the files of a folder (one level; sub-folders are listed in `skipped`). */
  file?: SourceFile;
  files?: SourceFile[];
  skipped?: string[];
}

export function parseS3Url(spec: string): { bucket: string; key: string } | undefined {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(spec);
  return m ? { bucket: m[1]!, key: m[2]! } : undefined;
}

function localFile(path: string, size: number, mtime: Date): SourceFile {
  return {
    name: basename(path),
    where: path,
    size,
    mtime,
    open: (signal) => createReadStream(path, { highWaterMark: 1 << 20, ...(signal ? { signal } : {}) }) as AsyncIterable<Buffer>,
  };
}

/**
 * Opens SOURCE: a local path, or `s3://bucket/key` read through `s3(bucket)` (a store with no
 * prefix on the right endpoint). A key ending in "/" (or naming no object but a prefix) is a folder.
 */
export async function openSource(spec: string, s3?: (bucket: string) => ObjectStore, signal?: AbortSignal): Promise<ImportSource> {
  const url = parseS3Url(spec);
  if (url) {
    if (!s3) throw new EtcdRecoverError('CONFIG', `${spec}: no S3 endpoint to read it from`, { hint: 'pass --s3-endpoint or --source-s3-endpoint and credentials' });
    const store = s3(url.bucket);
    const obj = (key: string, size: number, mtime?: Date): SourceFile => ({
      name: basename(key),
      where: `s3://${url.bucket}/${key}`,
      size,
      ...(mtime ? { mtime } : {}),
      open: (sig) => store.get(key, sig ? { signal: sig } : {}),
    });
    if (url.key && !url.key.endsWith('/')) {
      const head = await store.head(url.key, signal);
      if (head) return { description: spec, name: basename(url.key), ...(head.lastModified ? { mtime: head.lastModified } : {}), file: obj(url.key, head.size, head.lastModified) };
    }
    const prefix = url.key && !url.key.endsWith('/') ? `${url.key}/` : url.key;
    const files: SourceFile[] = [];
    const skipped = new Set<string>();
    for await (const o of store.list(prefix, signal)) {
      const rel = o.key.slice(prefix.length);
      if (!rel) continue;
      if (rel.includes('/')) skipped.add(`${rel.slice(0, rel.indexOf('/'))}/`);
      else files.push(obj(o.key, o.size, o.lastModified));
    }
    if (!files.length && !skipped.size) {
      throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `${spec}: no such object or folder in bucket ${url.bucket}`, { hint: 'check the bucket and key (`aws s3 ls`), and --source-s3-endpoint' });
    }
    return { description: spec, name: basename(prefix.replace(/\/$/, '')) || url.bucket, files: files.sort((a, b) => a.name.localeCompare(b.name)), skipped: [...skipped] };
  }
  const path = resolve(spec);
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `${spec}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or folder' : (e as Error).message}`, {
      hint: 'name a snapshot file, a backup archive, a backup folder or s3://bucket/key',
    });
  }
  if (st.isFile()) return { description: spec, name: basename(path), mtime: st.mtime, file: localFile(path, st.size, st.mtime) };
  if (!st.isDirectory()) throw new EtcdRecoverError('USAGE', `${spec} is neither a file nor a folder`);
  const files: SourceFile[] = [];
  const skipped: string[] = [];
  for (const d of (await readdir(path, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(path, d.name);
    if (d.isFile()) {
      const s = await stat(p);
      files.push(localFile(p, s.size, s.mtime));
    } else skipped.push(d.isDirectory() ? `${d.name}/` : d.name);
  }
  return { description: spec, name: basename(path), mtime: st.mtime, files, skipped };
}
