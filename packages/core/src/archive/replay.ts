/**
 * Point-in-time: the keyspace exactly as it was at revision R, built from a chain — its base snapshot
 * and every archived revision after it applied as one write transaction each, in order, up to R. Each
 * must land on the revision it had (checked, one by one), so every key's create revision, mod revision
 * and version come out as they were. The result runs as a temporary single-member etcd on loopback
 * (no revision bump: revisions stay as they were); the caller snapshots it like any live member and
 * restores that as usual.
 *
 * Two ways to apply the revisions, the same result:
 * - etcd-recover-replay (tools/go/etcd/replay, built beside etcd): writes them straight into the base's
 *   bbolt file through etcd's own storage packages — no raft, no network — and etcdutl then restores
 *   that file; the fast way, used whenever the tool is beside etcdutl;
 * - otherwise through a temporary etcd's API, one Txn per revision (as fast as etcd commits them).
 *
 * Leases: each lease is granted with its ID and its granted TTL as the archiver recorded them, and
 * none expires part-way (the file replay's lessor is never primary; the API replay keeps them alive):
 * an expiry would be a revision the original did not have. Keys keep their lease. After the restore
 * the leases count down afresh from their full TTL, as after any etcd restore; a lease revoked in the
 * original has its keys deleted in the replay, and the lease itself lingers keyless until its TTL ends.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { EtcdRecoverError, messageOf } from '../errors.js';
import { Etcd3Gateway } from '../etcd/etcd3-gateway.js';
import { Etcd3ReplayTarget } from '../etcd/etcd3-replication.js';
import { isAlive, spawnDetached, stopProcess } from '../processes.js';
import { fetchVerifiedSnapshot } from '../snapshot/fetch-verified.js';
import { findEtcdBinaries, type EtcdBinaries } from '../binaries.js';
import { freePort } from '../net-ports.js';
import type { Catalog } from '../snapshot/catalog.js';
import type { ChosenPoint } from './chains.js';
import { endFrame, frame, replayItems } from './replay-stream.js';

export interface ReplayedPoint {
  /** The temporary member's client URL: snapshot it, then close(). */
  endpoint: string;
  gateway: Etcd3Gateway;
  revision: number;
  baseRevision: number;
  replayed: number;
  /** The whole build: fetch and verify the base, restore it, start etcd, replay. */
  seconds: number;
  /** The replay alone (the transactions). */
  replaySeconds: number;
  close(): Promise<void>;
}

export async function replayToRevision(o: { catalog: Catalog; point: ChosenPoint; signal?: AbortSignal; progress?: (m: string) => void; binDir?: string }): Promise<ReplayedPoint> {
  const { catalog, point } = o;
  const progress = o.progress ?? (() => undefined);
  const bins = findEtcdBinaries(o.binDir);
  const dir = mkdtempSync(join(tmpdir(), 'etcd-recover-pitr-'));
  let pid: number | undefined;
  let gateway: Etcd3Gateway | undefined;
  let target: Etcd3ReplayTarget | undefined;
  const close = async () => {
    target?.close();
    gateway?.close();
    await stopProcess(pid, 5_000).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  const started = Date.now();
  try {
    const base = await catalog.get(point.chain.record.base.snapshot, o.signal);
    const file = join(dir, 'base.db');
    await fetchVerifiedSnapshot(catalog, base, file, { ...(o.signal ? { signal: o.signal } : {}), progress });
    const tool = join(dirname(bins.etcdutl), 'etcd-recover-replay');
    const fileReplay = existsSync(tool) && process.env['ETCD_RECOVER_REPLAY'] !== 'api';
    let replayed = 0;
    let replayStart = Date.now();
    if (fileReplay) {
      // The bare bbolt file: without etcd's sha256 trailer (its bytes were just proven against the record).
      if (base.hasTrailer !== false) truncateSync(file, statSync(file).size - 32);
      replayed = await replayIntoFile(tool, file, catalog, point, o.signal);
      progress(`applied ${replayed} revisions to the base's data file in ${((Date.now() - replayStart) / 1000).toFixed(1)} s`);
    }
    const replaySeconds0 = (Date.now() - replayStart) / 1000;
    const temp = await startTemp(bins, dir, file, fileReplay || base.hasTrailer === false, o.signal);
    pid = temp.pid;
    gateway = temp.gateway;
    const endpoint = temp.endpoint;
    const expected = fileReplay ? point.revision : point.chain.record.base.revision;
    if (temp.revision !== expected) throw new EtcdRecoverError('INTERNAL', `the temporary etcd started at revision ${temp.revision}, not ${expected}`);
    let replaySeconds = replaySeconds0;
    if (!fileReplay) {
      target = new Etcd3ReplayTarget({ endpoints: [endpoint] });
      replayStart = Date.now();
      replayed = await replayThroughApi(target, catalog, point, progress, o.signal);
      replaySeconds = (Date.now() - replayStart) / 1000;
    }
    const seconds = (Date.now() - started) / 1000;
    progress(`replayed ${replayed} revisions (${point.chain.record.base.revision + 1}-${point.revision}) onto backup ${base.name} in ${seconds.toFixed(1)} s`);
    return { endpoint, gateway, revision: point.revision, baseRevision: point.chain.record.base.revision, replayed, seconds, replaySeconds, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** etcd-recover-replay on the bare bbolt file: the revisions streamed on its stdin; resolves with how many it applied. */
async function replayIntoFile(tool: string, file: string, catalog: Catalog, point: ChosenPoint, signal?: AbortSignal): Promise<number> {
  const child = spawn(tool, ['--db', file], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  child.stdin.on('error', () => undefined); // a dead replayer: its exit code and stderr say why
  try {
    for await (const item of replayItems(catalog, point, signal)) {
      if (!child.stdin.write(frame(item))) await Promise.race([once(child.stdin, 'drain'), exited]);
      if (child.exitCode !== null) break;
    }
    child.stdin.end(endFrame(point.revision));
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  const code = await exited;
  if (code !== 0) throw new EtcdRecoverError('STEP_FAILED', `the point-in-time replay failed: ${err.trim() || `etcd-recover-replay exited ${code}`}; nothing was restored`);
  const r = JSON.parse(out.trim()) as { revision: number; replayed: number };
  if (r.revision !== point.revision) throw new EtcdRecoverError('INTERNAL', `the replay ended at revision ${r.revision}, not ${point.revision}`);
  return r.replayed;
}

/** The API replay: one Txn per revision into the running temporary etcd, leases kept alive. */
async function replayThroughApi(target: Etcd3ReplayTarget, catalog: Catalog, point: ChosenPoint, progress: (m: string) => void, signal?: AbortSignal): Promise<number> {
  const live = new Set<string>();
  let lastBeat = Date.now();
  let replayed = 0;
  for await (const item of replayItems(catalog, point, signal)) {
    if (item.kind === 'lease') {
      if (!live.has(item.id)) await target.grantLease(item.id, item.ttl);
      live.add(item.id);
      continue;
    }
    const b = item.batch;
    for (const e of b.events) {
      if (e.lease && !live.has(e.lease)) {
        await target.grantLease(e.lease, 3600);
        live.add(e.lease);
      }
    }
    const got = await target.apply(b.events);
    if (got !== b.revision) {
      throw new EtcdRecoverError('INTERNAL', `the point-in-time replay diverged: revision ${b.revision} of the archive became revision ${got} (did a lease expire during the replay?); nothing was restored`);
    }
    replayed++;
    if (Date.now() - lastBeat > 1_000) {
      await target.keepAlive([...live]).catch(() => undefined);
      lastBeat = Date.now();
      progress(`replayed to revision ${got} of ${point.revision}`);
    }
  }
  return replayed;
}

/** etcdutl restores the file (no bump: revisions stay) and a single-member etcd starts on it on loopback. */
async function startTemp(bins: EtcdBinaries, dir: string, file: string, skipHashCheck: boolean, signal?: AbortSignal): Promise<{ endpoint: string; pid: number; gateway: Etcd3Gateway; revision: number }> {
  const [client, peer] = [await freePort(), await freePort()];
  const endpoint = `http://127.0.0.1:${client}`;
  const peerURL = `http://127.0.0.1:${peer}`;
  const data = join(dir, 'data');
  await promisify(execFile)(bins.etcdutl, ['snapshot', 'restore', file, '--name', 'pitr', '--initial-cluster', `pitr=${peerURL}`, '--initial-advertise-peer-urls', peerURL, '--initial-cluster-token', 'etcd-recover-pitr', '--data-dir', data, ...(skipHashCheck ? ['--skip-hash-check'] : [])]).catch((e) => {
    throw new EtcdRecoverError('STEP_FAILED', `etcdutl snapshot restore for the point-in-time replay failed: ${messageOf(e)}`);
  });
  // A throwaway: no fsync (a crash means rebuild), room for large transactions.
  const pid = spawnDetached(
    bins.etcd,
    ['--name', 'pitr', '--data-dir', data, '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint, '--listen-peer-urls', peerURL, '--initial-advertise-peer-urls', peerURL, '--initial-cluster', `pitr=${peerURL}`, '--max-txn-ops', '1000000', '--max-request-bytes', String(64 * 1024 * 1024), '--quota-backend-bytes', String(8 * 1024 * 1024 * 1024), '--snapshot-count', '1000000', '--unsafe-no-fsync'],
    join(dir, 'etcd.log'),
  );
  const gateway = new Etcd3Gateway({ endpoints: [endpoint], timeoutMs: 5_000 });
  for (let i = 0; ; i++) {
    const s = await gateway.status(endpoint, signal).catch(() => undefined);
    if (s && s.leaderId !== '0') return { endpoint, pid, gateway, revision: s.revision };
    if (!isAlive(pid) || i > 300) {
      gateway.close();
      await stopProcess(pid, 1_000).catch(() => undefined);
      throw new EtcdRecoverError('STEP_FAILED', `the temporary etcd for the point-in-time replay did not start (log: ${join(dir, 'etcd.log')})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
