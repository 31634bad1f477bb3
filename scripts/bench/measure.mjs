import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Peak RSS (VmHWM) of a process, sampled until it exits; 0 if unreadable. */
function hwm(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Runs a command, returns wall time, peak RSS of the process (sampled from
 * /proc every 20 ms; the sh wrapper of the plugin execs node, so the pid is
 * the one doing the work) and its output.
 */
export function measure(cmd, args, { env = process.env, cwd, expectCode = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let peak = 0;
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setInterval(() => (peak = Math.max(peak, hwm(child.pid))), 20);
    child.on('error', reject);
    child.on('exit', () => (peak = Math.max(peak, hwm(child.pid))));
    child.on('close', (code) => {
      clearInterval(timer);
      const ms = performance.now() - t0;
      if (code !== expectCode) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
      else resolve({ ms, rss: peak, stdout, stderr });
    });
  });
}
