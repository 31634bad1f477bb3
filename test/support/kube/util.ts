import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Now as Kubernetes writes times (RFC 3339, whole seconds). */
export const isoNow = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** One word for sh, single-quoted. */
export const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Polls `fn` until it returns something other than undefined/false (errors count as "not yet").
 * The last error is part of the timeout message, so a failing wait says why.
 */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const why = last ? `: ${(last as Error).message ?? String(last)}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(intervalMs);
  }
}

/** A free TCP port on `host` (bound then released: fine on a test machine). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Runs a command, resolving stdout; rejects with stderr in the message. */
export function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}${stderr ? `\n${stderr}` : ''}`));
      else resolve(stdout);
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}

/** Synchronous variant that never throws (cleanup paths). */
export function runQuiet(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat): tells a live pid from a reused one. */
export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function alive(pid: number, startTime?: string): boolean {
  const st = procStartTime(pid);
  return st !== undefined && (startTime === undefined || st === startTime);
}

export interface Managed {
  name: string;
  child: ChildProcess;
  pid: number;
  logFile: string;
  exited: Promise<number | null>;
  exitCode?: number | null;
}

/**
 * Spawns a long-running process in its own process group, stdout+stderr appended to logFile,
 * with SIGKILL as parent-death signal (setpriv --pdeathsig): if the test process dies without
 * running its exit handlers, the kernel still kills what it started.
 */
export function spawnManaged(name: string, cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env, cwd?: string): Managed {
  const fd = openSync(logFile, 'a');
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...args], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env,
    ...(cwd ? { cwd } : {}),
  });
  closeSync(fd);
  const m: Managed = { name, child, pid: child.pid!, logFile, exited: undefined as never };
  m.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      m.exitCode = code ?? (signal ? 128 : null);
      resolve(m.exitCode);
    });
    child.on('error', () => {
      m.exitCode = -1;
      resolve(-1);
    });
  });
  return m;
}

/** SIGTERM the process group, then SIGKILL after graceMs. */
export async function stopManaged(m: Managed, graceMs = 5_000): Promise<void> {
  if (m.exitCode !== undefined) return;
  try { process.kill(-m.pid, 'SIGTERM'); } catch { /* gone */ }
  const done = await Promise.race([m.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done) {
    try { process.kill(-m.pid, 'SIGKILL'); } catch { /* gone */ }
    await Promise.race([m.exited, sleep(2_000)]);
  }
}

export function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
