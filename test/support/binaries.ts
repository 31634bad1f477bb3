import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const resolved = new Map<string, Record<string, string>>();

/**
 * Runs scripts/ensure-binaries.sh for these components — it builds what the cache lacks, waits for a
 * build already under way (setup's background build during `npm test`), or honours ETCD_BIN_DIR /
 * MINIO_BIN / KUBE_BIN_DIR / PULUMI_BIN_DIR / PULUMI_KUBERNETES_BIN_DIR — and returns its NAME=path
 * lines. Every path `required` names must exist: a missing binary is a failure, never a skip.
 */
export function ensureBinaries(components: string[], required: (env: Record<string, string>) => string[]): Record<string, string> {
  const key = components.join(' ');
  let env = resolved.get(key);
  if (!env) {
    const out = execFileSync('bash', [join(root, 'scripts', 'ensure-binaries.sh'), ...components], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    env = Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    for (const p of required(env)) {
      if (!p || !existsSync(p)) throw new Error(`required binary missing: ${p} (scripts/ensure-binaries.sh ${key})`);
    }
    resolved.set(key, env);
  }
  return env;
}

/** Paths of the real etcd tools and MinIO the tests run. */
export function binaries(): { etcd: string; etcdctl: string; etcdutl: string; minio: string; etcdBinDir: string } {
  const env = ensureBinaries(['etcd', 'minio'], (e) => [...['etcd', 'etcdctl', 'etcdutl'].map((b) => join(e['ETCD_BIN_DIR'] ?? '', b)), e['MINIO_BIN'] ?? '']);
  const etcdBinDir = env['ETCD_BIN_DIR']!;
  return { etcd: join(etcdBinDir, 'etcd'), etcdctl: join(etcdBinDir, 'etcdctl'), etcdutl: join(etcdBinDir, 'etcdutl'), minio: env['MINIO_BIN']!, etcdBinDir };
}

/** kubectl, built with the control plane: the tests run the plugin through its real plugin dispatch and completion. */
export function kubectl(): string {
  const env = ensureBinaries(['kubernetes'], (e) => [join(e['KUBE_BIN_DIR'] ?? '', 'kubectl')]);
  return join(env['KUBE_BIN_DIR']!, 'kubectl');
}

export const repoRoot = root;
