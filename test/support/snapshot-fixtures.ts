/**
 * Real etcd snapshot fixtures: starts a throw-away single-member etcd, writes
 * keys (with overwrites, large values, deletes/tombstones and a compaction),
 * saves a snapshot with `etcdctl snapshot save`, and asks `etcdutl snapshot
 * status` for the reference numbers.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { ensureBinaries } from './binaries.js';

const pExecFile = promisify(execFile);

let binDir: string | undefined;

/** Folder holding etcd, etcdctl, etcdutl (ETCD_BIN_DIR, else scripts/ensure-binaries.sh). */
export function etcdBinDir(): string {
  if (binDir) return binDir;
  const env = process.env['ETCD_BIN_DIR'];
  if (env) return (binDir = env);
  return (binDir = ensureBinaries(['etcd'], (e) => [join(e['ETCD_BIN_DIR'] ?? '', 'etcdutl')])['ETCD_BIN_DIR']!);
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

export interface EtcdProcess {
  endpoint: string;
  dataDir: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a single-member etcd on random ports in a temp data dir; resolves once it serves. */
export async function startEtcd(opts: { args?: string[] } = {}): Promise<EtcdProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'etcd-verifier-'));
  const cport = await freePort();
  let pport = await freePort();
  while (pport === cport) pport = await freePort();
  const client = `http://127.0.0.1:${cport}`;
  const peer = `http://127.0.0.1:${pport}`;
  let log = '';
  const proc = spawn(
    join(etcdBinDir(), 'etcd'),
    [
      '--name', 't',
      '--data-dir', join(dataDir, 'data'),
      '--listen-client-urls', client,
      '--advertise-client-urls', client,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `t=${peer}`,
      '--unsafe-no-fsync',
      '--log-level', 'warn',
      ...(opts.args ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  proc.stdout!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
  proc.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`etcd exited with ${proc.exitCode}:\n${log}`);
    try {
      await pExecFile(join(etcdBinDir(), 'etcdctl'), ['--endpoints', client, 'endpoint', 'health'], { timeout: 5000 });
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`etcd did not become healthy:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { endpoint: client, dataDir, proc, stop };
}

export interface EtcdutlStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
  version?: string;
}

/** `etcdutl snapshot status <file> -w json`. */
export async function etcdutlStatus(file: string): Promise<EtcdutlStatus> {
  const { stdout } = await pExecFile(join(etcdBinDir(), 'etcdutl'), ['snapshot', 'status', file, '-w', 'json'], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as EtcdutlStatus;
}

/** Runs `etcdutl snapshot status` and returns its error output when it fails, else undefined. */
export async function etcdutlStatusError(file: string): Promise<string | undefined> {
  try {
    await pExecFile(join(etcdBinDir(), 'etcdutl'), ['snapshot', 'status', file, '-w', 'json'], { maxBuffer: 1 << 20 });
    return undefined;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    return err.stderr || err.message;
  }
}

/** Writes `n` keys with bounded concurrency. */
async function putMany(client: Etcd3, entries: Array<[string, string | Buffer]>, concurrency = 64): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < entries.length) {
      const [k, v] = entries[next++]!;
      await client.put(k).value(v);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

export interface PopulateOptions {
  keys?: number;
  valueSize?: number;
  /** Values large enough to need bbolt overflow pages. */
  largeValues?: number[];
}

/** Writes a realistic key set: puts, overwrites, large values, deletes (tombstones) and a compaction. */
export async function populate(endpoint: string, opts: PopulateOptions = {}): Promise<void> {
  const n = opts.keys ?? 3000;
  const vsize = opts.valueSize ?? 120;
  const client = new Etcd3({ hosts: endpoint });
  try {
    const val = (i: number, gen: number): string => `v${gen}-${i}-`.padEnd(vsize, String.fromCharCode(97 + (i % 26)));
    await putMany(client, Array.from({ length: n }, (_, i) => [`/registry/pods/ns${i % 7}/pod-${String(i).padStart(6, '0')}`, val(i, 1)]));
    // Overwrites: more revisions per key.
    await putMany(client, Array.from({ length: Math.floor(n / 3) }, (_, i) => [`/registry/pods/ns${(i * 3) % 7}/pod-${String(i * 3).padStart(6, '0')}`, val(i, 2)]));
    // Large values (overflow pages).
    const large = opts.largeValues ?? [9000, 20000, 70000];
    await putMany(client, large.map((sz, i) => [`/registry/configmaps/big-${i}`, Buffer.alloc(sz, 65 + i)]), 4);
    // Deletes before the compaction (their tombstones get compacted away) …
    for (let i = 0; i < n; i += 17) await client.delete().key(`/registry/pods/ns${i % 7}/pod-${String(i).padStart(6, '0')}`);
    const rev = Number((await client.get('/registry/configmaps/big-0').exec()).header.revision);
    await client.kv.compact({ revision: String(rev), physical: true });
    // … and after it (tombstones remain in the snapshot).
    for (let i = 5; i < n; i += 23) await client.delete().key(`/registry/pods/ns${i % 7}/pod-${String(i).padStart(6, '0')}`);
    await putMany(client, Array.from({ length: 200 }, (_, i) => [`/registry/events/e-${i}`, val(i, 3)]));
  } finally {
    client.close();
  }
}

/** `etcdctl snapshot save`. */
export async function saveSnapshot(endpoint: string, file: string): Promise<void> {
  await pExecFile(join(etcdBinDir(), 'etcdctl'), ['--endpoints', endpoint, 'snapshot', 'save', file], { timeout: 60000 });
}

export interface SnapshotFixture {
  dir: string;
  /** As saved by etcdctl (with the sha256 trailer). */
  snapshot: string;
  /** The same database without the trailer (a raw bbolt copy). */
  raw: string;
  status: EtcdutlStatus;
  rawStatus: EtcdutlStatus;
  /** A fresh cluster holding two keys (its `key` bucket is inline in the root page). */
  small: string;
  smallStatus: EtcdutlStatus;
  cleanup(): Promise<void>;
}

let cached: Promise<SnapshotFixture> | undefined;

/** One real snapshot per test run (cached). */
export function snapshotFixture(): Promise<SnapshotFixture> {
  cached ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'snapshot-fixture-'));
    let etcd: EtcdProcess;
    try {
      etcd = await startEtcd();
    } catch (e) {
      cached = undefined;
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    try {
      const small = join(dir, 'small.db');
      const client = new Etcd3({ hosts: etcd.endpoint });
      try {
        await client.put('/registry/a').value('1');
        await client.put('/registry/b').value('2');
      } finally {
        client.close();
      }
      await saveSnapshot(etcd.endpoint, small);
      await populate(etcd.endpoint);
      const snapshot = join(dir, 'snap.db');
      await saveSnapshot(etcd.endpoint, snapshot);
      const bytes = await readFile(snapshot);
      const raw = join(dir, 'raw.db');
      await writeFile(raw, bytes.subarray(0, bytes.length - 32));
      const [status, rawStatus, smallStatus] = await Promise.all([etcdutlStatus(snapshot), etcdutlStatus(raw), etcdutlStatus(small)]);
      const cleanup = async (): Promise<void> => {
        cached = undefined; // a later caller builds a new one
        await rm(dir, { recursive: true, force: true });
      };
      return { dir, snapshot, raw, status, rawStatus, small, smallStatus, cleanup };
    } catch (e) {
      cached = undefined;
      await rm(dir, { recursive: true, force: true });
      throw e;
    } finally {
      await etcd.stop();
    }
  })();
  return cached;
}

/** A copy of `bytes` with the byte at `offset` inverted. */
export function flipByte(bytes: Uint8Array, offset: number): Buffer {
  const b = Buffer.from(bytes);
  b[offset] = b[offset]! ^ 0xff;
  return b;
}

// ------------------------------------------------------------ bbolt layout ---

export interface BoltBucket {
  name: string;
  /** Root page id; 0 when inline. */
  root: number;
  /** Offset of the bucket's value (16-byte header [+ inline page]) in the file. */
  valueOffset: number;
}

export interface BoltLayout {
  pageSize: number;
  hwm: number;
  root: number;
  freelist: number;
  /** File offset of the active meta page's body. */
  metaOffset: number;
  buckets: Map<string, BoltBucket>;
  /** Leaf pages of a bucket's tree in key order (empty for inline buckets). */
  leaves(bucket: string): number[];
  /** Branch pages of a bucket's tree, parents first. */
  branches(bucket: string): number[];
  /** Every page in use: metas, the freelist page, all trees with their overflow pages. */
  reachable: Set<number>;
}

/** A tiny in-memory bbolt reader for building corrupted fixtures (whole file in memory: tests only). */
export function boltLayout(b: Buffer): BoltLayout {
  const u64 = (o: number): number => b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 2 ** 32;
  const pageSize = b.readUInt32LE(16 + 8);
  const m0 = 16;
  const m1 = pageSize + 16;
  const metaOffset = u64(m1 + 48) > u64(m0 + 48) ? m1 : m0;
  const root = u64(metaOffset + 16);
  const reachable = new Set<number>([0, 1]);
  const walk = (pg: number, leaves: number[], branches: number[]): void => {
    const p = pg * pageSize;
    for (let i = 0; i <= b.readUInt32LE(p + 12); i++) reachable.add(pg + i);
    const flags = b.readUInt16LE(p + 8);
    const count = b.readUInt16LE(p + 10);
    if (flags & 1) {
      branches.push(pg);
      for (let i = 0; i < count; i++) walk(u64(p + 16 + 16 * i + 8), leaves, branches);
    } else leaves.push(pg);
  };
  const rootLeaves: number[] = [];
  walk(root, rootLeaves, []);
  const buckets = new Map<string, BoltBucket>();
  for (const pg of rootLeaves) {
    const p = pg * pageSize;
    for (let i = 0; i < b.readUInt16LE(p + 10); i++) {
      const e = p + 16 + 16 * i;
      const k0 = e + b.readUInt32LE(e + 4);
      const ks = b.readUInt32LE(e + 8);
      const name = b.subarray(k0, k0 + ks).toString();
      buckets.set(name, { name, root: u64(k0 + ks), valueOffset: k0 + ks });
    }
  }
  const tree = (name: string): { leaves: number[]; branches: number[] } => {
    const bk = buckets.get(name);
    const leaves: number[] = [];
    const branches: number[] = [];
    if (bk && bk.root !== 0) walk(bk.root, leaves, branches);
    return { leaves, branches };
  };
  for (const bk of buckets.values()) tree(bk.name);
  const freelist = u64(metaOffset + 32);
  if (freelist < 2 ** 53) for (let i = 0; i <= b.readUInt32LE(freelist * pageSize + 12); i++) reachable.add(freelist + i);
  return {
    pageSize,
    hwm: u64(metaOffset + 40),
    reachable,
    root,
    freelist,
    metaOffset,
    buckets,
    leaves: (name) => tree(name).leaves,
    branches: (name) => tree(name).branches,
  };
}

/** Recomputes the FNV-1a 64 checksum of the meta body at `metaOffset` (page start + 16). */
export function resealMeta(b: Buffer, metaOffset: number): void {
  let h = 0xcbf29ce484222325n;
  for (let i = metaOffset; i < metaOffset + 56; i++) h = ((h ^ BigInt(b[i]!)) * 0x100000001b3n) & 0xffffffffffffffffn;
  b.writeBigUInt64LE(h, metaOffset + 56);
}

/**
 * Gives a raw database a persisted freelist (etcd runs bbolt with NoFreelistSync,
 * so its snapshots have none): the page ids `free`, written to page `at`, which
 * the active meta then points to (both metas are updated and resealed).
 */
export function withFreelist(raw: Buffer, at: number, free: number[]): Buffer {
  const b = Buffer.from(raw);
  const L = boltLayout(b);
  const ps = L.pageSize;
  if ((free.length + 2) * 8 + 16 > ps) throw new Error('freelist does not fit one page');
  const p = at * ps;
  b.fill(0, p, p + ps);
  b.writeUInt32LE(at, p);
  b.writeUInt16LE(0x10, p + 8);
  b.writeUInt16LE(free.length, p + 10);
  const ids = [...free].sort((x, y) => x - y);
  ids.forEach((id, i) => b.writeBigUInt64LE(BigInt(id), p + 16 + 8 * i));
  for (const m of [16, ps + 16]) {
    b.writeBigUInt64LE(BigInt(at), m + 32);
    resealMeta(b, m);
  }
  return b;
}
