import { execFile, execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentImageFromVars } from './kube/rootfs.js';
import type { ImageSpec } from './kube/images.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cacheDir = () => process.env['ETCD_RECOVER_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(process.env['HOME'] ?? '/root', '.cache'), 'etcd-recover');
export type AgentImage = ImageSpec & { image: string; id: string; bytes: number };
let built: AgentImage | undefined;

/**
 * The agent image, built from docker/agent.Dockerfile by scripts/build-image.sh (`npm run image`):
 * reused when its content is unchanged, waited for while setup's background build runs, built here
 * otherwise. A build failure is a test failure, never a skip.
 */
export function agentImage(): AgentImage {
  if (built) return built;
  const out = execFileSync('bash', [join(root, 'scripts', 'build-image.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  const vars = Object.fromEntries(out.trim().split('\n').filter((l) => /^AGENT_[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  built = agentImageFromVars(vars);
  return built;
}

export interface PodmanResult { code: number; stdout: string; stderr: string }

/** `podman ARGS` with the containers.conf this VM needs (written by build-image.sh). */
export function podman(args: string[], timeoutMs = 300_000): Promise<PodmanResult> {
  return new Promise((resolve) => {
    execFile('podman', args, { env: { ...process.env, CONTAINERS_CONF: join(cacheDir(), 'image', 'containers.conf') }, timeout: timeoutMs, maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
