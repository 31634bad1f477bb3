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

/** One etcd minor of the version matrix: the component scripts/ensure-binaries.sh builds it as, and the variable it prints. */
export interface EtcdMinor {
  /** "3.5", "3.6", "3.7". */
  minor: string;
  component: 'etcd' | 'etcd_3_5' | 'etcd_3_7';
  envVar: 'ETCD_BIN_DIR' | 'ETCD_3_5_BIN_DIR' | 'ETCD_3_7_BIN_DIR';
}

/**
 * The etcd minors the version matrix (test/integration/etcd-versions.test.ts) runs, oldest first: the
 * newest patch of each the Go module proxy serves (tools/go/etcd-3.5, tools/go/etcd, tools/go/etcd-3.7).
 * 3.6 (`etcd`) is what every other test runs.
 */
export const ETCD_MATRIX: readonly EtcdMinor[] = [
  { minor: '3.5', component: 'etcd_3_5', envVar: 'ETCD_3_5_BIN_DIR' },
  { minor: '3.6', component: 'etcd', envVar: 'ETCD_BIN_DIR' },
  { minor: '3.7', component: 'etcd_3_7', envVar: 'ETCD_3_7_BIN_DIR' },
];

/**
 * The etcd, etcdctl and etcdutl of one minor, built on demand (the first call for 3.5 or 3.7 builds it:
 * call it from a before hook with a long timeout). ETCD_3_5_BIN_DIR / ETCD_3_7_BIN_DIR use existing ones.
 */
export function etcdBinaries(minor: string): { etcd: string; etcdctl: string; etcdutl: string; etcdBinDir: string } {
  const m = ETCD_MATRIX.find((x) => x.minor === minor);
  if (!m) throw new Error(`etcd ${minor} is not in the version matrix (${ETCD_MATRIX.map((x) => x.minor).join(', ')})`);
  const env = ensureBinaries([m.component], (e) => ['etcd', 'etcdctl', 'etcdutl'].map((b) => join(e[m.envVar] ?? '', b)));
  const etcdBinDir = env[m.envVar]!;
  return { etcd: join(etcdBinDir, 'etcd'), etcdctl: join(etcdBinDir, 'etcdctl'), etcdutl: join(etcdBinDir, 'etcdutl'), etcdBinDir };
}
