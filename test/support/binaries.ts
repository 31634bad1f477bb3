import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
let resolved: Record<string, string> | undefined;

/**
 * Paths of the real binaries the tests run. scripts/ensure-binaries.sh builds
 * them once (cached outside the repo) or honours ETCD_BIN_DIR / MINIO_BIN /
 * KUBE_BIN_DIR. A missing binary is a failure, never a skip.
 */
export function binaries(): { etcd: string; etcdctl: string; etcdutl: string; minio: string; etcdBinDir: string } {
  if (!resolved) {
    const out = execFileSync('bash', [join(root, 'scripts', 'ensure-binaries.sh'), 'etcd', 'minio'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    resolved = Object.fromEntries(
      out
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
  }
  const etcdBinDir = resolved['ETCD_BIN_DIR']!;
  const paths = {
    etcd: join(etcdBinDir, 'etcd'),
    etcdctl: join(etcdBinDir, 'etcdctl'),
    etcdutl: join(etcdBinDir, 'etcdutl'),
    minio: resolved['MINIO_BIN']!,
    etcdBinDir,
  };
  for (const [k, p] of Object.entries(paths)) {
    if (k !== 'etcdBinDir' && !existsSync(p)) throw new Error(`required binary ${k} not found at ${p} (scripts/ensure-binaries.sh)`);
  }
  return paths;
}

export const repoRoot = root;
