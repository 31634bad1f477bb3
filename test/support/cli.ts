import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './binaries.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The Node-launched plugin (bin/kubectl-etcd_recover: Node + dist/), as `npm install` gives it. */
export const nodePluginBin = join(repoRoot, 'packages', 'kubectl-plugin', 'bin', 'kubectl-etcd_recover');
/** The single executable (scripts/release-binary.mjs), as krew installs it: no Node needed. */
export const executablePluginBin = join(repoRoot, 'packages', 'kubectl-plugin', 'dist-bundle', 'kubectl-etcd_recover');

/**
 * What the CLI tests run: the single executable (built by `npm test`'s setup), so every CLI test
 * proves the shipped binary; ETCD_RECOVER_TEST_CLI=node runs them against the Node launcher instead.
 */
export const pluginBin = (() => {
  if (process.env.ETCD_RECOVER_TEST_CLI === 'node') return nodePluginBin;
  if (!existsSync(executablePluginBin)) throw new Error(`${executablePluginBin} is missing: run \`npm test\` (its setup builds it) or \`node scripts/release-binary.mjs --exe-only\``);
  return executablePluginBin;
})();

/** Runs the real plugin binary (as kubectl would) and captures its output. */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(pluginBin, args, {
      env: { ...process.env, ETCD_RECOVER_SANDBOX: '/nonexistent-sandbox', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

export function json<T = any>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not JSON (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}
