import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, createServer, type Socket } from 'node:net';
import { layout, readJson, type ArchiveStatus, type Sandbox } from '@etcd-recover/core';
import { pluginBin } from './cli.js';
import { storeFor } from './sandbox.js';
import { waitFor } from './kube/util.js';

export interface ArchiverProcess {
  proc: ChildProcess;
  log(): string;
  /** SIGTERM (flushes first) or SIGKILL; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `agent archive` against a sandbox, as the component's Deployment runs it (the real binary). */
export function startArchiver(sb: Sandbox, args: string[] = []): ArchiverProcess {
  const proc = spawn(pluginBin, ['agent', 'archive', '--sandbox-dir', sb.dir, ...(args.includes('--interval') ? [] : ['--interval', '200']), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return {
    proc,
    log: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

export async function archiveStatus(sb: Sandbox): Promise<ArchiveStatus | undefined> {
  return (await readJson<ArchiveStatus>(storeFor(sb), layout.archiveStatus(sb.state.cluster)))?.value;
}

/** Until the archive holds revision `rev` (its status says so). */
export async function archivedTo(sb: Sandbox, rev: number, timeoutMs = 60_000): Promise<ArchiveStatus> {
  return waitFor(`the archive reaches revision ${rev}`, async () => {
    const s = await archiveStatus(sb).catch(() => undefined);
    return s && s.lastRevision >= rev ? s : undefined;
  }, timeoutMs, 100);
}

/** A TCP forwarder to the sandbox's MinIO that can be cut (an S3 outage) and restored. */
export async function switchableProxy(target: string): Promise<{ url: string; down(): void; up(): void; close(): Promise<void> }> {
  const t = new URL(target);
  let open = true;
  const sockets = new Set<Socket>();
  const server = createServer((c) => {
    if (!open) return c.destroy();
    const u = createConnection({ host: t.hostname, port: Number(t.port) });
    for (const s of [c, u]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => (c.destroy(), u.destroy()));
    }
    c.pipe(u).pipe(c);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    down: () => {
      open = false;
      for (const s of sockets) s.destroy();
    },
    up: () => {
      open = true;
    },
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}
