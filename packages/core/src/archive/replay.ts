/**
 * Point-in-time: the keyspace exactly as it was at revision R, built from a chain — its base snapshot
 * loaded into a temporary single-member etcd on loopback (no revision bump: revisions stay as they
 * were), then every archived revision after it replayed as one transaction, in order, up to R. Each
 * transaction must land on the revision it had (the replay checks every one), so every key's create
 * revision, mod revision and version come out as they were. The caller snapshots the result (a live
 * member like any other) and restores it as usual.
 *
 * Leases: each lease is granted with its ID and its granted TTL as the archiver recorded them, and
 * kept alive while the replay runs, so none expires part-way (an expiry would be a revision the
 * original did not have). Keys keep their lease. After the restore the leases count down afresh from
 * their full TTL, as after any etcd restore; a lease revoked in the original has its keys deleted in
 * the replay, and the lease itself lingers keyless until its TTL runs out.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { EtcdRecoverError, messageOf } from '../errors.js';
import { Etcd3Gateway } from '../etcd/etcd3-gateway.js';
import { Etcd3ReplayTarget } from '../etcd/etcd3-replication.js';
import { isAlive, spawnDetached, stopProcess } from '../processes.js';
import { fetchVerifiedSnapshot } from '../recovery/member-data.js';
import { findEtcdBinaries } from '../sandbox/binaries.js';
import { freePort } from '../sandbox/sandbox.js';
import type { Catalog } from '../snapshot/catalog.js';
import type { ChosenPoint } from './chains.js';
import { readSegment } from './segment-io.js';

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
    const [client, peer] = [await freePort(), await freePort()];
    const endpoint = `http://127.0.0.1:${client}`;
    const peerURL = `http://127.0.0.1:${peer}`;
    const data = join(dir, 'data');
    await promisify(execFile)(bins.etcdutl, ['snapshot', 'restore', file, '--name', 'pitr', '--initial-cluster', `pitr=${peerURL}`, '--initial-advertise-peer-urls', peerURL, '--initial-cluster-token', 'etcd-recover-pitr', '--data-dir', data, ...(base.hasTrailer === false ? ['--skip-hash-check'] : [])]).catch((e) => {
      throw new EtcdRecoverError('STEP_FAILED', `etcdutl snapshot restore of ${base.name} for the point-in-time replay failed: ${messageOf(e)}`);
    });
    pid = spawnDetached(
      bins.etcd,
      ['--name', 'pitr', '--data-dir', data, '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint, '--listen-peer-urls', peerURL, '--initial-advertise-peer-urls', peerURL, '--initial-cluster', `pitr=${peerURL}`, '--max-txn-ops', '1000000', '--max-request-bytes', String(64 * 1024 * 1024), '--quota-backend-bytes', String(8 * 1024 * 1024 * 1024), '--snapshot-count', '1000000', '--unsafe-no-fsync'],
      join(dir, 'etcd.log'),
    );
    gateway = new Etcd3Gateway({ endpoints: [endpoint], timeoutMs: 5_000 });
    for (let i = 0; ; i++) {
      const s = await gateway.status(endpoint, o.signal).catch(() => undefined);
      if (s && s.leaderId !== '0') {
        if (s.revision !== point.chain.record.base.revision) throw new EtcdRecoverError('INTERNAL', `the base snapshot ${base.name} restored at revision ${s.revision}, not the chain's ${point.chain.record.base.revision}`);
        break;
      }
      if (!isAlive(pid) || i > 300) throw new EtcdRecoverError('STEP_FAILED', `the temporary etcd for the point-in-time replay did not start (log: ${join(dir, 'etcd.log')})`);
      await new Promise((r) => setTimeout(r, 100));
    }
    target = new Etcd3ReplayTarget({ endpoints: [endpoint] });
    const replayStart = Date.now();
    const live = new Set<string>();
    let lastBeat = Date.now();
    let replayed = 0;
    let at = point.chain.record.base.revision;
    for (const ref of point.segments) {
      o.signal?.throwIfAborted();
      const seg = await readSegment(catalog, ref, o.signal);
      for (const [lease, ttl] of Object.entries(seg.header.leases)) {
        if (live.has(lease)) continue;
        await target.grantLease(lease, ttl);
        live.add(lease);
      }
      for (const b of seg.batches) {
        if (b.revision <= at) continue;
        if (b.revision > point.revision) break;
        if (b.revision !== at + 1) throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `the archive of chain ${point.chain.record.chain} jumps from revision ${at} to ${b.revision} in ${ref.key}`);
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
        at = got;
        replayed++;
        if (Date.now() - lastBeat > 1_000) {
          await target.keepAlive([...live]).catch(() => undefined);
          lastBeat = Date.now();
          progress(`replayed to revision ${at} of ${point.revision}`);
        }
      }
      if (at >= point.revision) break;
    }
    if (at !== point.revision) throw new EtcdRecoverError('NO_RESTORE_POINT', `the archive of chain ${point.chain.record.chain} reaches revision ${at}, not ${point.revision}`);
    const seconds = (Date.now() - started) / 1000;
    progress(`replayed ${replayed} revisions (${point.chain.record.base.revision + 1}-${at}) onto backup ${base.name} in ${seconds.toFixed(1)} s`);
    return { endpoint, gateway, revision: at, baseRevision: point.chain.record.base.revision, replayed, seconds, replaySeconds: (Date.now() - replayStart) / 1000, close };
  } catch (e) {
    await close();
    throw e;
  }
}
