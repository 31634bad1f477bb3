/**
 * The archiver: follows every change of a cluster through etcd's watch and writes it to the bucket as
 * segments (segment.ts) of a chain (chains.ts), so a restore can reach any revision since the chain's
 * base snapshot — an RPO of about the flush interval, where backups alone give the backup schedule.
 *
 * - Fenced: it holds its own lock object (archive-owner.json, the recovery lock's mechanism), and
 *   every segment write is fenced by it, so two archivers never write one chain.
 * - Paused while a recovery holds the cluster's lock: what it holds is flushed, nothing is read.
 * - Resumes after a restart from the last archived revision + 1. When etcd has compacted that away, or
 *   the cluster is another (restored: a new cluster ID, or its revision went back), it takes a new
 *   base snapshot and starts a new chain that records the gap. It never deletes or rewrites anything.
 * - Memory is bounded: past `maxBufferBytes` unflushed (the bucket down), it stops reading the watch
 *   and says so (alarm in archive-status.json); once the bucket is back it catches up from etcd's
 *   history, or starts a new chain if that history is gone.
 */
import { messageOf } from '../errors.js';
import type { EtcdGateway } from '../etcd/etcd-gateway.js';
import type { ChangeSource, RevisionBatch, WatchSession } from '../etcd/replication.js';
import { CompactedError } from '../etcd/replication.js';
import { layout } from '../layout.js';
import { RecoveryLock } from '../lock.js';
import { captureSnapshot } from '../snapshot/capture.js';
import type { Catalog } from '../snapshot/catalog.js';
import { CHAIN_FORMAT, listChains, newChainId, type ChainInfo, type ChainRecord } from './chains.js';
import { writeSegment } from './segment-io.js';

export interface ArchiverOptions {
  catalog: Catalog;
  /** For the members' status and the base snapshots. */
  gateway: EtcdGateway;
  source: ChangeSource;
  /** Flush every this often (default 1000 ms). */
  intervalMs?: number;
  /** A segment holds at most about this many bytes of keys and values (default 8 MiB). */
  maxSegmentBytes?: number;
  /** Unflushed bytes past which the watch is no longer read (default 64 MiB). */
  maxBufferBytes?: number;
  staleAfterMs?: number;
  /**
   * Start a new chain from a fresh base this often (default 1 h; 0: never): bounds the replay a
   * point-in-time restore needs, and keeps the newest chain's base young (a bucket lifecycle rule
   * that expires old objects then only ever takes whole old chains).
   */
  rebaseMs?: number;
  signal: AbortSignal;
  log?: (m: string) => void;
}

export interface ArchiveStatus {
  chain: string;
  lastRevision: number;
  /** When the last archived revision was seen (ms). */
  lastAt: number;
  flushedAt: string;
  alarm?: string;
}

const sizeOf = (b: RevisionBatch) => b.events.reduce((n, e) => n + e.key.length + (e.value?.length ?? 0) + 48, 16);
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
  });

export async function runArchiver(o: ArchiverOptions): Promise<void> {
  const { catalog, signal } = o;
  const log = o.log ?? (() => undefined);
  const intervalMs = o.intervalMs ?? 1000;
  o = { ...o, rebaseMs: o.rebaseMs ?? 3_600_000 };
  const owner = new RecoveryLock(catalog.store, catalog.cluster, {
    key: layout.archiveOwner(catalog.cluster),
    ...(o.staleAfterMs ? { staleAfterMs: o.staleAfterMs } : {}),
    onLost: (why) => log(`the archiver's fence is lost (${why}): stopping`),
  });
  // 1. The fence: one archiver per cluster.
  for (let waited = false; !signal.aborted; ) {
    const got = await owner.tryAcquire(`archive-${owner.runId.slice(0, 8)}`, 'archive', 'agent archive', signal).catch((e) => ({ error: e as Error }));
    if ('error' in got) {
      log(`cannot take the archiver's fence: ${messageOf(got.error)}; retrying`);
    } else if ('heldBy' in got) {
      if (!waited) log(`another archiver holds the fence (pid ${got.heldBy.pid} on ${got.heldBy.host}, heartbeat ${got.heldBy.heartbeatAt}): waiting`);
      waited = true;
    } else {
      if (got.previous) log(`took the fence over from an archiver that is gone (pid ${got.previous.pid} on ${got.previous.host}, last heartbeat ${got.previous.heartbeatAt})`);
      break;
    }
    await sleep(5_000, signal);
  }
  try {
    while (!signal.aborted && owner.held) {
      if (await recoveryRunning(catalog, signal)) {
        log('a recovery holds the cluster lock: archiving is paused');
        while (!signal.aborted && (await recoveryRunning(catalog, signal))) await sleep(2_000, signal);
        continue;
      }
      try {
        await follow(o, owner, intervalMs, log);
      } catch (e) {
        if (signal.aborted) break;
        log(`archiving stopped: ${messageOf(e)}; starting again in 2 s`);
        await sleep(2_000, signal);
      }
    }
  } finally {
    await owner.release().catch(() => undefined);
  }
}

async function recoveryRunning(catalog: Catalog, signal: AbortSignal): Promise<boolean> {
  return Boolean(await catalog.store.head(layout.lock(catalog.cluster), signal).catch(() => undefined));
}

/** Where to go on from: the chain to extend and its next revision, or a new chain. */
async function position(o: ArchiverOptions, log: (m: string) => void): Promise<{ chain: ChainRecord; from: number }> {
  const { catalog, signal } = o;
  const status = await firstStatus(o.gateway, signal);
  const chains = await listChains(catalog.store, catalog.cluster, signal);
  const last: ChainInfo | undefined = chains[chains.length - 1];
  let reason: ChainRecord['reason'] = 'first';
  if (last) {
    const lastArchived = Math.max(last.to, ...last.segments.map((s) => s.last));
    if (last.record.clusterId !== status.clusterId || lastArchived > status.revision) reason = 'restored';
    // Nothing newer yet (an idle cluster): nothing to check; else etcd must still hold what comes next.
    else if (lastArchived < status.revision && !(await o.source.hasHistoryFrom(lastArchived + 1))) reason = 'compacted';
    else {
      log(`resuming chain ${last.record.chain} from revision ${lastArchived + 1}`);
      return { chain: last.record, from: lastArchived + 1 };
    }
    log(
      reason === 'restored'
        ? `the cluster is not the one chain ${last.record.chain} follows (cluster ID ${status.clusterId}, revision ${status.revision}): starting a new chain`
        : `etcd no longer holds revision ${lastArchived + 1} (compacted while the archiver was away): starting a new chain; revisions ${lastArchived + 1} up to the new base are a gap`,
    );
  }
  const record = await startChain(o, reason, last ? { chain: last.record.chain, last: last.to, lastAt: last.toAt } : undefined, log);
  return { chain: record, from: record.base.revision + 1 };
}

/** A new chain: a fresh verified backup as its base (labelled archive-base), then its record. */
async function startChain(o: ArchiverOptions, reason: ChainRecord['reason'], previous: ChainRecord['previous'] | undefined, log: (m: string) => void): Promise<ChainRecord> {
  const { catalog, signal } = o;
  const chainId = newChainId();
  const base = await captureSnapshot({ gateway: o.gateway, catalog, labels: { reason: 'archive-base', chain: chainId }, signal });
  const record: ChainRecord = {
    format: CHAIN_FORMAT,
    cluster: catalog.cluster,
    chain: chainId,
    clusterId: base.clusterId,
    // The store revision the snapshot restores to, as etcd computes it: the last key revision, or the
    // compaction revision when that is higher (its tombstones are gone), and 1 for an empty keyspace.
    base: { snapshot: base.name, revision: Math.max(base.revision, base.compactRevision ?? 0, 1), createdAt: base.createdAt },
    startedAt: new Date().toISOString(),
    reason,
    // A rebased chain's predecessor ends exactly at this base (the watch carries it there).
    ...(previous ? { previous: reason === 'rebased' ? { ...previous, last: Math.max(base.revision, base.compactRevision ?? 0, 1) } : previous } : {}),
  };
  await catalog.store.put(layout.archiveChain(catalog.cluster, chainId), JSON.stringify(record, null, 2), { contentType: 'application/json', ifNoneMatch: true, signal });
  log(`chain ${chainId} starts from backup ${base.name} at revision ${record.base.revision}${reason === 'rebased' ? ` (chain ${previous?.chain} ends there)` : ''}`);
  return record;
}

async function firstStatus(gateway: EtcdGateway, signal: AbortSignal) {
  let err: unknown;
  for (const ep of gateway.endpoints) {
    try {
      const s = await gateway.status(ep, signal);
      if (s.leaderId !== '0') return s;
    } catch (e) {
      err = e;
    }
  }
  throw err instanceof Error ? err : new Error('no member has a leader');
}

/** Follows the watch and flushes segments until the watch or the fence fails, or a recovery starts. */
async function follow(o: ArchiverOptions, owner: RecoveryLock, intervalMs: number, log: (m: string) => void): Promise<void> {
  const { catalog, signal } = o;
  const maxSegment = o.maxSegmentBytes ?? 8 * 1024 * 1024;
  const maxBuffer = o.maxBufferBytes ?? 64 * 1024 * 1024;
  const start = await position(o, log);
  let chain = start.chain;
  const from = start.from;
  let next = from;
  // A rebase: a new chain whose base is taken while the watch runs on; revisions up to the base go
  // to the old chain, later ones to the new one, so the two meet without a gap.
  let handover: { at: number; next: ChainRecord } | undefined;
  let rebasing = false;
  // While a rebase takes its base: what was written meanwhile (what the new chain may need again).
  let tail: RevisionBatch[] | undefined;
  let carry: RevisionBatch[] = [];
  let buffer: RevisionBatch[] = [];
  let buffered = 0;
  let lastFlushed: { revision: number; at: number } | undefined;
  let alarm: string | undefined;
  const leases = new Map<string, number>();
  let session: WatchSession | undefined = o.source.watchFrom(next);
  let watchError: Error | undefined;
  let paused = false;
  let reported: number | undefined;
  let reportedAlarm: string | undefined;
  let reportedAt = 0;

  const reading = (async () => {
    try {
      for await (const batches of session!.batches()) {
        for (const b of batches) {
          if (b.revision < next) continue;
          buffer.push(b);
          buffered += sizeOf(b);
          next = b.revision + 1;
        }
        if (buffered > maxBuffer && !paused) {
          paused = true;
          alarm = `${Math.round(buffered / 1048576)} MiB not yet written to the bucket: the archiver stopped reading etcd until it can write`;
          log(alarm);
          session!.close();
        }
      }
    } catch (e) {
      watchError = e as Error;
    }
  })();

  // Segments of `batches` (in order, contiguous) into the current chain, split at the size bound;
  // `done(n)` after each segment with how many of them it took.
  const writeRun = async (batches: readonly RevisionBatch[], done: (n: number, bytes: number) => void) => {
    let i = 0;
    while (i < batches.length) {
      let n = 0;
      let bytes = 0;
      while (i + n < batches.length && (n === 0 || bytes + sizeOf(batches[i + n]!) <= maxSegment)) bytes += sizeOf(batches[i + n++]!);
      const part = batches.slice(i, i + n);
      const fresh: Record<string, number> = {};
      for (const b of part)
        for (const e of b.events)
          if (e.lease && !leases.has(e.lease)) {
            const ttl = (await o.source.leaseTtl(e.lease).catch(() => undefined)) ?? 3600;
            leases.set(e.lease, ttl);
            fresh[e.lease] = ttl;
          }
      // No abort signal on the writes: a stop (SIGTERM) flushes what is held before it exits.
      await owner.fence();
      await writeSegment(catalog, chain.chain, part, fresh);
      if (tail) tail.push(...part);
      lastFlushed = { revision: part[part.length - 1]!.revision, at: part[part.length - 1]!.at };
      i += n;
      done(n, bytes);
    }
  };
  const fromBuffer = (k: number) =>
    writeRun(buffer.slice(0, k), (n, bytes) => {
      buffer = buffer.slice(n);
      buffered -= bytes;
    });

  // Writes what is buffered now (what arrives meanwhile waits for the next flush): one segment per
  // flush, more only past the size bound. At a rebase's handover, first what the old chain still
  // needs up to the new base, then the switch; what the old chain already took past the new base
  // while that base was being taken is written again as the new chain's first segment (`carry`), so
  // the new chain starts right after its base.
  const flush = async () => {
    if (handover) {
      const at = handover.at;
      const upTo = buffer.findIndex((b) => b.revision > at);
      await fromBuffer(upTo < 0 ? buffer.length : upTo);
      carry = (tail ?? []).filter((b) => b.revision > at);
      log(`chain ${chain.chain} ends at revision ${Math.max(at, lastFlushed?.revision ?? at)}; chain ${handover.next.chain} goes on from revision ${at + 1}`);
      chain = handover.next;
      handover = undefined;
      tail = undefined;
      leases.clear();
    }
    if (carry.length) {
      await writeRun(carry, (n) => (carry = carry.slice(n)));
    }
    await fromBuffer(buffer.length);
  };


  try {
    // A write waits at most about half the interval in the buffer before its segment is written, so
    // that with the PUT it is durable within the interval (the RPO the interval promises); under a
    // steady load that is about two segments per interval.
    const tick = Math.max(10, Math.min(50, intervalMs / 4));
    let lockCheckedAt = Date.now();
    // After a failed write, the next try waits a second (a bucket that is down is not hammered).
    let retryAt = 0;
    for (;;) {
      await sleep(tick, signal);
      const due = buffer.length > 0 && (signal.aborted || Date.now() >= retryAt) && (signal.aborted || paused || buffered >= maxSegment || Date.now() - buffer[0]!.at >= intervalMs / 2);
      try {
        if (due || handover || carry.length) await flush();
        if (alarm && buffered === 0) {
          log('the bucket takes writes again: the archiver catches up');
          alarm = undefined;
        }
      } catch (e) {
        if (!owner.held) throw e;
        retryAt = Date.now() + 1_000;
        const why = `cannot write archive segments to ${catalog.store.description}: ${messageOf(e)}`;
        if (alarm !== why && !paused) log(why);
        if (!paused) alarm = why;
      }
      // The status (what `status` reports as the archive's lag): on every flush and alarm, at the start, and every 10 s when idle.
      const flushedNow = lastFlushed !== undefined && lastFlushed.revision !== reported;
      if ((flushedNow && (Date.now() - reportedAt >= 1_000 || buffer.length === 0)) || alarm !== reportedAlarm || Date.now() - reportedAt > 10_000 || (signal.aborted && flushedNow)) {
        reported = lastFlushed?.revision;
        reportedAlarm = alarm;
        reportedAt = Date.now();
        const st: ArchiveStatus = {
          chain: chain.chain,
          lastRevision: lastFlushed?.revision ?? from - 1,
          lastAt: lastFlushed?.at ?? Date.parse(chain.base.createdAt),
          flushedAt: new Date().toISOString(),
          ...(alarm ? { alarm } : {}),
        };
        await catalog.store.put(layout.archiveStatus(catalog.cluster), JSON.stringify(st), { contentType: 'application/json' }).catch(() => undefined);
      }
      if (signal.aborted) return;
      if (!owner.held) throw new Error('the fence is lost');
      if (o.rebaseMs && !rebasing && !handover && Date.now() - Date.parse(chain.startedAt) > o.rebaseMs) {
        rebasing = true;
        tail = [];
        const old = chain;
        void startChain(o, 'rebased', { chain: old.chain, last: 0 }, log)
          .then((rec) => {
            handover = { at: rec.base.revision, next: rec };
          })
          .catch((e) => {
            tail = undefined;
            log(`a new chain could not start (${messageOf(e)}); chain ${old.chain} goes on`);
          })
          .finally(() => (rebasing = false));
      }
      // Caught up after an outage that stopped the reading: watch again from where the buffer ends.
      if (paused && buffered === 0) return;
      if (watchError) {
        if (watchError instanceof CompactedError) log(`the watch fell behind etcd's compaction (${watchError.message})`);
        throw watchError;
      }
      if (Date.now() - lockCheckedAt >= 1_000) {
        lockCheckedAt = Date.now();
        if (await recoveryRunning(catalog, signal)) {
          await flush().catch(() => undefined);
          return;
        }
      }
    }
  } finally {
    session?.close();
    session = undefined;
    await reading;
    // What was read and not written stays in etcd's history: the next run resumes from the bucket's last segment.
  }
}
