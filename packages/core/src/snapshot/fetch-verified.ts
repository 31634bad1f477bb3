import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EtcdRecoverError } from '../errors.js';
import type { Catalog, SnapshotRecord } from './catalog.js';
import { readSnapshot } from './snapshot-object.js';
import { SnapshotVerifier, describeDefects, type SnapshotReport } from './verifier/index.js';

export interface StreamVerifiedOptions {
  signal?: AbortSignal;
  /** `wx`: refuse an existing `part` (default `w`). */
  flag?: 'w' | 'wx';
  /** fsync the file before it is closed. */
  sync?: boolean;
  /** Bytes written so far, after each chunk. */
  onBytes?: (bytes: number) => void;
  /** An object-store hiccup the read resumed from. */
  onRetry?: (r: { offset: number; error: string; attempt: number }) => void;
  /** The error for a backup that is corrupt or does not match its record (`why` says which). */
  fail: (why: string) => Error;
}

/**
 * Streams a backup from the bucket into `part`, verifying it natively in the same pass (bbolt walk,
 * etcd's sha256 trailer) and against its catalog record: what every path that takes a backup out of
 * the bucket (a restore, an export, a replay's base) does. On any failure `part` is removed.
 */
export async function streamVerified(catalog: Catalog, record: SnapshotRecord, part: string, o: StreamVerifiedOptions): Promise<{ bytes: number; report: SnapshotReport }> {
  const out = await open(part, o.flag ?? 'w');
  // A trailer is required, except for a backup imported from a raw bbolt copy (record.hasTrailer
  // false): safe because the whole file's sha256 must still equal the record's (checked below),
  // taken when it was imported; every other backup stays as strict as ever.
  const verifier = new SnapshotVerifier({ requireTrailer: record.hasTrailer !== false });
  let bytes = 0;
  try {
    // Borrowed chunks: each is verified and fully written before the next is pulled.
    for await (const chunk of readSnapshot(catalog, record, { ...(o.signal ? { signal: o.signal } : {}), borrow: true, ...(o.onRetry ? { onRetry: o.onRetry } : {}) })) {
      verifier.update(chunk);
      for (let done = 0; done < chunk.length; ) done += (await out.write(chunk, done, chunk.length - done)).bytesWritten;
      bytes += chunk.length;
      o.onBytes?.(bytes);
    }
    if (o.sync) await out.sync();
    await out.close();
  } catch (e) {
    await out.close().catch(() => undefined);
    rmSync(part, { force: true });
    throw e;
  }
  const report = verifier.finish();
  const fail = (why: string) => {
    rmSync(part, { force: true });
    return o.fail(why);
  };
  if (!report.ok) throw fail(`is corrupt: ${describeDefects(report)}`);
  if (report.sha256 !== record.sha256) throw fail(`does not match its catalog record (sha256 ${report.sha256.slice(0, 12)}… vs ${record.sha256.slice(0, 12)}…)`);
  return { bytes, report };
}

/** Downloads a backup into a file, proven as streamVerified proves it. Nothing is left behind on failure. */
export async function fetchVerifiedSnapshot(
  catalog: Catalog,
  record: SnapshotRecord,
  file: string,
  o: { signal?: AbortSignal; progress?: (m: string) => void } = {},
): Promise<{ bytes: number; revision: number; totalKeys: number }> {
  mkdirSync(dirname(file), { recursive: true });
  const part = `${file}.part`;
  const { bytes, report } = await streamVerified(catalog, record, part, {
    ...(o.signal ? { signal: o.signal } : {}),
    onRetry: (r) => o.progress?.(`object store hiccup at byte ${r.offset} (${r.error}); resuming, attempt ${r.attempt}`),
    fail: (why) => new EtcdRecoverError('SNAPSHOT_CORRUPT', `restore point ${record.name} ${why}`, { hint: 'nothing was changed; choose another backup with --snapshot' }),
  });
  renameSync(part, file);
  return { bytes, revision: report.revision, totalKeys: report.totalKeys };
}
