import { strict as assert } from 'node:assert';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { Sandbox, S3ObjectStore, type S3Config } from '@etcd-recover/core';
import { binaries } from './binaries.js';

/**
 * The sandboxes started and not yet stopped, by folder. Their processes are read from the state on
 * disk, not from a test's Sandbox object: every CLI run that starts or stops a member writes that
 * file, so an object loaded before the last run names pids that are gone, and stopping by it would
 * leave the members that run now behind (holding their ports for the rest of the suite).
 */
const live = new Map<string, Sandbox>();
process.on('exit', () => {
  // Last resort if a test run dies before its after-hooks: never leave processes behind.
  for (const [dir, started] of live) {
    const sb = current(dir) ?? started;
    for (const pid of [...sb.state.members.map((m) => m.pid), sb.state.minio?.pid]) {
      if (pid) try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
});

function current(dir: string): Sandbox | undefined {
  try {
    return Sandbox.load(dir);
  } catch {
    return undefined;
  }
}

/**
 * A real N-member etcd cluster and a real MinIO on loopback (random ports, temp dir). `etcdBinDir`: the
 * etcd it runs (test/support/binaries.ts etcdBinaries(minor)); default the 3.6 build every test runs.
 */
export async function startSandbox(opts: { members?: number; cluster?: string; storeHost?: string; encrypt?: boolean; etcdBinDir?: string } = {}): Promise<Sandbox> {
  const b = binaries();
  process.env['ETCD_BIN_DIR'] = b.etcdBinDir;
  process.env['MINIO_BIN'] = b.minio;
  const dir = mkdtempSync(join(tmpdir(), 'etcd-recover-test-'));
  const sb = await Sandbox.up({ dir, members: opts.members ?? 3, ...(opts.cluster ? { cluster: opts.cluster } : {}), ...(opts.storeHost ? { storeHost: opts.storeHost } : {}), ...(opts.encrypt ? { encrypt: true } : {}), ...(opts.etcdBinDir ? { etcdBinDir: opts.etcdBinDir } : {}) });
  live.set(dir, sb);
  return sb;
}

export async function stopSandbox(sb: Sandbox | undefined): Promise<void> {
  if (!sb) return;
  // ETCD_RECOVER_TEST_KEEP=1 keeps the folders (logs, data, state) of a run to look into.
  await (current(sb.dir) ?? sb).down({ purge: !process.env['ETCD_RECOVER_TEST_KEEP'] || !existsSync(sb.dir) });
  live.delete(sb.dir);
}

export function tempDir(prefix = 'etcd-recover-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Writes n keys `${prefix}NNNNNNN` in transactions of 100 (6x faster than single puts). */
export async function writeKeys(endpoints: string[], n: number, prefix = 'k/', valueSize = 64, start = 0): Promise<void> {
  const client = new Etcd3({ hosts: endpoints });
  try {
    const value = 'v'.repeat(valueSize);
    const batches: number[] = [];
    for (let i = start; i < start + n; i += 100) batches.push(i);
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < batches.length) {
          const from = batches[next++]!;
          const to = Math.min(from + 100, start + n);
          const ops = [];
          for (let i = from; i < to; i++) ops.push(client.put(`${prefix}${String(i).padStart(7, '0')}`).value(value));
          await client.if('__none__', 'Version', '==', 0).then(...ops).commit();
        }
      }),
    );
  } finally {
    client.close();
  }
}

export async function countKeys(endpoint: string, prefix = 'k/'): Promise<number> {
  const client = new Etcd3({ hosts: [endpoint] });
  try {
    return await client.getAll().prefix(prefix).count();
  } finally {
    client.close();
  }
}

/** A raw S3 store on the sandbox's MinIO with overrides (other bucket, bad credentials, …). */
export function storeFor(sb: Sandbox, overrides: Partial<S3Config> = {}): S3ObjectStore {
  return new S3ObjectStore({ ...sb.s3Config(), ...overrides });
}

/** What a lost disk looks like: the member's process is killed and its data folder deleted. */
/** Overwrites a member's database with garbage and restarts it: it crash-loops (asserted). */
export async function corruptMember(sb: Sandbox, name: string): Promise<void> {
  await sb.stopMember(name);
  writeFileSync(join(sb.member(name).dataDir, 'member', 'snap', 'db'), Buffer.alloc(64 * 1024, 0x5a));
  sb.startMember(name, 'existing');
  await sleep(2_000);
  assert.equal(Sandbox.load(sb.dir)!.isRunning(name), false, `${name} crashed on its corrupt data`);
}

export async function destroyMembers(sb: Sandbox, names: string[]): Promise<void> {
  for (const name of names) {
    const m = sb.member(name);
    await sb.stopMember(name, { kill: true });
    rmSync(m.dataDir, { recursive: true, force: true });
  }
}

/** How many keys under a prefix ONE member holds (serializable, member-local, values not fetched). */
export async function countOnMember(endpoint: string, prefix: string): Promise<number> {
  const client = new Etcd3({ hosts: [endpoint] });
  try {
    return await client.getAll().prefix(prefix).serializable(true).count();
  } finally {
    client.close();
  }
}

/** Keys under a prefix and the revision, read from ONE member only (serializable, member-local). */
export async function readMember(endpoint: string, prefix = 'k/'): Promise<{ keys: Record<string, string>; revision: number }> {
  const client = new Etcd3({ hosts: [endpoint] });
  try {
    const keys = await client.getAll().prefix(prefix).serializable(true).strings();
    const status = await client.maintenance.status();
    return { keys, revision: Number(status.header.revision) };
  } finally {
    client.close();
  }
}

/** An etcd3 client for a sandbox's members (default all), presenting its client certificate when it runs TLS. */
export function sandboxClient(sb: Sandbox, hosts: string[] = sb.endpoints()): Etcd3 {
  const tls = sb.etcdConnection().tls;
  return new Etcd3({ hosts, ...(tls ? { credentials: { rootCertificate: tls.ca!, certChain: tls.cert!, privateKey: tls.key! } } : {}) });
}

/** Registers a sandbox started elsewhere (e.g. by `sandbox up` through the CLI) for the exit-time clean-up. */
export function adoptSandbox(sb: Sandbox): Sandbox {
  live.set(sb.dir, sb);
  return sb;
}

/**
 * Until every member has applied the same revision: a write is acknowledged once a majority has it,
 * and a survivor that had not applied the last one when the others die rightly restores without it.
 */
export async function settled(sb: Sandbox): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const revs = await Promise.all(sb.state.members.map(async (m) => (await readMember(m.clientURL, '\u0000')).revision));
    if (new Set(revs).size === 1) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('members did not converge on one revision');
}
