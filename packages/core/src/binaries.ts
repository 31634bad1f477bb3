import { existsSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { EtcdRecoverError } from './errors.js';

export interface EtcdBinaries {
  etcd: string;
  etcdctl: string;
  etcdutl: string;
}

/** The cache scripts/ensure-binaries.sh builds into. */
export function binaryCacheRoot(): string {
  return process.env['ETCD_RECOVER_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'etcd-recover');
}

/**
 * Whether a cache folder holds the component `prefix` itself: `etcd-<key>`, never `etcd-3.5-<key>` or
 * `etcd-3.7-<key>` (the other etcd minors scripts/ensure-binaries.sh builds for the version matrix)
 * nor a build still under way (`<name>.tmp.<pid>`). The key is 16 hex digits.
 */
export function isCacheFolderOf(prefix: string, folder: string): boolean {
  return folder.length === prefix.length + 17 && folder.startsWith(prefix + '-') && /^[0-9a-f]{16}$/.test(folder.slice(prefix.length + 1));
}

function newestCached(prefix: string, file: string): string | undefined {
  const dir = join(binaryCacheRoot(), 'bin');
  if (!existsSync(dir)) return undefined;
  const hits = readdirSync(dir)
    .filter((d) => isCacheFolderOf(prefix, d) && existsSync(join(dir, d, file)))
    .map((d) => join(dir, d))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return hits[0];
}

function onPath(file: string): string | undefined {
  for (const d of (process.env['PATH'] ?? '').split(delimiter)) {
    if (d && existsSync(join(d, file))) return d;
  }
  return undefined;
}

/** etcd binaries: $ETCD_BIN_DIR, else the build cache, else PATH. */
export function findEtcdBinaries(dir = process.env['ETCD_BIN_DIR']): EtcdBinaries {
  const d = dir ?? newestCached('etcd', 'etcdutl') ?? onPath('etcdutl');
  if (!d || !existsSync(join(d, 'etcd')) || !existsSync(join(d, 'etcdutl'))) {
    throw new EtcdRecoverError('CONFIG', `etcd binaries (etcd, etcdctl, etcdutl >= 3.5) not found${d ? ` in ${d}` : ''}`, {
      hint: 'run scripts/ensure-binaries.sh etcd, or set ETCD_BIN_DIR to a folder holding etcd and etcdutl',
    });
  }
  return { etcd: join(d, 'etcd'), etcdctl: join(d, 'etcdctl'), etcdutl: join(d, 'etcdutl') };
}

/** MinIO: $MINIO_BIN, else the build cache, else PATH. */
export function findMinio(bin = process.env['MINIO_BIN']): string {
  const p = bin ?? (newestCached('minio', 'minio') ? join(newestCached('minio', 'minio')!, 'minio') : undefined) ?? (onPath('minio') ? join(onPath('minio')!, 'minio') : undefined);
  if (!p || !existsSync(p)) {
    throw new EtcdRecoverError('CONFIG', 'MinIO server binary not found', {
      hint: 'run scripts/ensure-binaries.sh minio, or set MINIO_BIN',
    });
  }
  return p;
}
