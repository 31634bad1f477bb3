/**
 * Point-in-time restore points: a revision or a time resolved against the archive, and the snapshot
 * of that point built (replay.ts) and written as a backup record labelled `point-in-time` — restored
 * by name only, never picked as "the newest backup" (catalog.ts isPointInTime).
 */
import { EtcdRecoverError } from '../errors.js';
import { captureSnapshot } from '../snapshot/capture.js';
import type { Catalog, SnapshotRecord } from '../snapshot/catalog.js';
import { choosePoint, listChains, type ChainInfo, type ChosenPoint, type PointRequest } from './chains.js';
import { replayToRevision } from './replay.js';
import { readSegment } from './segment-io.js';

/** The chain, revision and segments of a point; a time becomes the newest revision archived at or before it. */
export async function resolvePoint(catalog: Catalog, req: PointRequest, signal?: AbortSignal, listed?: readonly ChainInfo[]): Promise<ChosenPoint> {
  const chains = listed ?? (await listChains(catalog.store, catalog.cluster, signal));
  const got = choosePoint(chains, req);
  if ('revision' in got) return got;
  const { chain, segment, time } = got;
  let revision = chain.record.base.revision;
  if (segment) {
    revision = segment.first - 1;
    for (const b of (await readSegment(catalog, segment, signal)).batches) if (b.at <= time) revision = b.revision;
  }
  return choosePoint([chain], { revision }) as ChosenPoint;
}

export interface PointInTimeBuild {
  record: SnapshotRecord;
  point: { chain: string; revision: number; baseSnapshot: string; baseRevision: number; replayed: number; seconds: number };
}

/**
 * Builds the snapshot of a point and writes it into `into` (the cluster's catalog for a restore; a
 * scratch one for a drill) as a verified backup labelled point-in-time. The record keeps the
 * chain's etcd cluster ID: the data is that cluster's (the temporary etcd only carried it).
 */
export async function buildPointInTime(o: { catalog: Catalog; into?: Catalog; point: ChosenPoint; labels?: Record<string, string>; signal?: AbortSignal; progress?: (m: string) => void; binDir?: string }): Promise<PointInTimeBuild> {
  const into = o.into ?? o.catalog;
  const replayed = await replayToRevision({ catalog: o.catalog, point: o.point, ...(o.signal ? { signal: o.signal } : {}), ...(o.progress ? { progress: o.progress } : {}), ...(o.binDir ? { binDir: o.binDir } : {}) });
  try {
    const rec = await captureSnapshot({
      gateway: replayed.gateway,
      catalog: into,
      member: replayed.endpoint,
      labels: { ...o.labels, reason: 'point-in-time', chain: o.point.chain.record.chain, 'to-revision': String(o.point.revision) },
      ...(o.signal ? { signal: o.signal } : {}),
    });
    if (rec.revision !== o.point.revision) throw new EtcdRecoverError('INTERNAL', `the point-in-time snapshot is at revision ${rec.revision}, not ${o.point.revision}`);
    const record: SnapshotRecord = { ...rec, clusterId: o.point.chain.record.clusterId, sourceMember: { ...rec.sourceMember, name: `point-in-time replay of chain ${o.point.chain.record.chain}` } };
    await into.writeRecord(record, o.signal);
    return {
      record,
      point: { chain: o.point.chain.record.chain, revision: o.point.revision, baseSnapshot: o.point.chain.record.base.snapshot, baseRevision: replayed.baseRevision, replayed: replayed.replayed, seconds: replayed.seconds },
    };
  } finally {
    await replayed.close();
  }
}

/** What a plan shows of a point: the chain, how many segments, and what is lost against the archive's newest revision. */
export function describePoint(p: ChosenPoint, chains: readonly ChainInfo[]): { chain: string; baseSnapshot: string; baseRevision: number; segments: number; revision: number; newestArchived: number; revisionsDropped: number } {
  const newest = Math.max(...chains.map((c) => c.to));
  return { chain: p.chain.record.chain, baseSnapshot: p.chain.record.base.snapshot, baseRevision: p.chain.record.base.revision, segments: p.segments.length, revision: p.revision, newestArchived: newest, revisionsDropped: Math.max(0, newest - p.revision) };
}
