import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './binaries.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export const pluginBin = join(repoRoot, 'packages', 'kubectl-plugin', 'bin', 'kubectl-etcd_recover');

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
