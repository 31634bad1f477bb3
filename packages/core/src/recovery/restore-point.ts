import { EtcdRecoverError } from '../errors.js';
import { Catalog, isTrusted, isVerified, type SnapshotRecord } from '../snapshot/catalog.js';
import { listChains, type ChainInfo, type ChosenPoint } from '../archive/chains.js';
import { describePoint, resolvePoint } from '../archive/point.js';
import type { ClusterObservation } from './observation.js';
import type { RestorePoint } from './plan.js';

export type RestorePointRequest = 'auto' | 'live' | 'latest' | { name: string } | PointInTimeRequest;
/** `--to-revision` / `--to-time`: a point rebuilt from the archive (archive/point.ts). */
export type PointInTimeRequest = { toRevision: number } | { toTime: string };

export function isPointInTimeRequest(r: RestorePointRequest | undefined): r is PointInTimeRequest {
  return typeof r === 'object' && ('toRevision' in r || 'toTime' in r);
}

/** The point in time a request names, for messages. */
export function describePointRequest(r: PointInTimeRequest): string {
  return 'toRevision' in r ? `--to-revision ${r.toRevision}` : `--to-time ${r.toTime}`;
}

/** A member that can give a live snapshot: its etcd answers and it still has data. */
export function liveCandidates(o: ClusterObservation): { name: string; revision: number }[] {
  return o.members
    .filter((m) => m.status && !m.status.isLearner && m.hasData !== false)
    .map((m) => ({ name: m.name, revision: m.status!.revision }))
    .sort((a, b) => b.revision - a.revision);
}

/**
 * Chooses where to restore from. `auto` compares the best surviving member (its etcd answers and it
 * still has data) with the newest trusted backup of this cluster and takes whichever holds the higher
 * revision (a tie goes to the live member: a fresh snapshot, nothing since it lost); `live`, `latest`
 * or a backup name force a choice. A backup of another cluster is refused unless `allowForeign`.
 * The result also names the newest trusted backup, so the plan's data-loss line is right either way.
 */
export async function resolveRestorePoint(opts: {
  catalog: Catalog;
  observation: ClusterObservation;
  request: RestorePointRequest;
  allowForeign?: boolean;
  /** etcd cluster IDs this cluster's recoveries have seen (restores change the ID). */
  lineage?: string[];
  signal?: AbortSignal;
}): Promise<{ point: RestorePoint; record?: SnapshotRecord; backups: SnapshotRecord[]; newestBackup?: SnapshotRecord }> {
  const { catalog, observation, request } = opts;
  const listing = await catalog.list(opts.signal);
  const backups = listing.snapshots;
  const live = liveCandidates(observation);
  const lineageOf = (r: SnapshotRecord) => [...(opts.lineage ?? []), ...backups.filter((b) => b.name !== r.name).map((b) => b.clusterId)];

  // The newest backup that may be restored without being named: verified, not suspect, of this cluster.
  const skipped: string[] = [];
  let newest: SnapshotRecord | undefined;
  for (const b of backups) {
    if (!isTrusted(b)) {
      if (isVerified(b)) skipped.push(`${b.name} (suspect: ${b.suspect?.reasons.join('; ') ?? 'not trusted'})`);
      continue;
    }
    const foreign = foreignReason(b, catalog.cluster, observation, lineageOf(b));
    if (foreign && !opts.allowForeign) {
      skipped.push(`${b.name} (${foreign})`);
      continue;
    }
    newest = b;
    break;
  }
  const withNewest = newest ? { newestBackup: newest } : {};

  if (request === 'live' || (request === 'auto' && live.length && (!newest || live[0]!.revision >= newest.revision))) {
    if (!live.length) {
      throw new EtcdRecoverError('NO_RESTORE_POINT', 'no surviving member answers with data, so there is nothing to take a live snapshot from', {
        hint: 'restore from a backup: --restore-point latest (or name one with --snapshot)',
      });
    }
    const best = live[0]!;
    const vs = newest ? `; newest trusted backup ${newest.name} is at revision ${newest.revision}` : '; no trusted backup to compare with';
    return {
      point: { kind: 'live', member: best.name, revision: best.revision, reason: (request === 'live' ? 'requested' : `member ${best.name} survives with data (revision ${best.revision})`) + vs },
      backups,
      ...withNewest,
    };
  }

  let record: SnapshotRecord | undefined;
  if (isPointInTimeRequest(request)) throw new EtcdRecoverError('INTERNAL', 'a point-in-time request is resolved against the archive (resolvePointInTime)');
  if (typeof request === 'object') {
    record = await catalog.get(request.name, opts.signal);
    const foreign = foreignReason(record, catalog.cluster, observation, lineageOf(record));
    if (foreign && !opts.allowForeign) {
      throw new EtcdRecoverError('SNAPSHOT_FOREIGN', `backup ${record.name} belongs to another cluster: ${foreign}`, {
        hint: 'choose a backup of this cluster (`backup list`), or pass --force-foreign if you really mean to restore this data here',
      });
    }
  } else {
    record = newest;
    if (!record) {
      const untrusted = backups.length
        ? ` (${backups.length} backup(s) exist but none is verified, trusted and of this cluster${skipped.length ? `; skipped: ${skipped.join(', ')}` : ''}: run \`backup verify --all\`, or name one with --snapshot)`
        : '';
      throw new EtcdRecoverError('NO_RESTORE_POINT', `no verified backup of cluster ${catalog.cluster} in ${catalog.store.description} and no surviving member with data${untrusted}`, {
        hint: backups.length ? 'verify the backups, or pass --snapshot NAME' : 'check --bucket/--prefix/--cluster point at the right backups',
      });
    }
  }
  const survivor = live[0];
  const reason =
    (typeof request === 'object'
      ? 'requested'
      : request === 'latest'
        ? 'requested latest'
        : survivor
          ? `newest trusted backup (revision ${record.revision}) is newer than every surviving member (best: ${survivor.name} at revision ${survivor.revision})`
          : 'newest verified backup (no member survives with data)') + (skipped.length ? `; skipped: ${skipped.join(', ')}` : '');
  return { point: backupRestorePoint(record, reason), record, backups, ...withNewest };
}

/**
 * A point in time as a restore point: the chain, the base backup and the segments that rebuild it,
 * and what the archive holds past it. Refusals (outside every chain, in a hole, between chains) come
 * from choosePoint, naming the ranges there are.
 */
export async function resolvePointInTime(catalog: Catalog, request: PointInTimeRequest, signal?: AbortSignal): Promise<{ point: RestorePoint; base: SnapshotRecord; chosen: ChosenPoint }> {
  let time: Date | undefined;
  if ('toTime' in request) {
    time = new Date(request.toTime);
    if (Number.isNaN(time.getTime())) throw new EtcdRecoverError('USAGE', `--to-time ${request.toTime} is not a time (use RFC 3339, e.g. 2026-12-02T03:04:05Z)`);
  }
  const chains = await listChains(catalog.store, catalog.cluster, signal);
  const chosen = await resolvePoint(catalog, time ? { time } : { revision: (request as { toRevision: number }).toRevision }, signal, chains);
  const d = describePoint(chosen, chains);
  const base = await catalog.get(d.baseSnapshot, signal);
  if (!isVerified(base)) {
    throw new EtcdRecoverError('NO_RESTORE_POINT', `the base backup ${base.name} of archive chain ${d.chain} is not verified${base.verification ? ` (its verification failed: ${base.verification.defects.join('; ')})` : ''}`, {
      hint: `verify it (\`backup verify ${base.name}\`), or choose a point in another chain`,
    });
  }
  let at: string | undefined;
  const seg = chosen.segments[chosen.segments.length - 1];
  if (chosen.revision === d.baseRevision) at = base.createdAt;
  else if (seg) at = new Date(seg.lastAt).toISOString();
  const point: RestorePoint = {
    kind: 'point-in-time',
    revision: chosen.revision,
    ...(at ? { createdAt: at } : {}),
    clusterId: chosen.chain.record.clusterId,
    verified: true,
    pointInTime: { chain: d.chain, baseSnapshot: d.baseSnapshot, baseRevision: d.baseRevision, segments: d.segments, newestArchived: d.newestArchived, revisionsDropped: d.revisionsDropped, asked: time ? { time: time.toISOString() } : { revision: chosen.revision } },
    reason: `requested ${describePointRequest(request)}${time ? ` (the newest archived revision at or before it is ${chosen.revision})` : ''}`,
  };
  return { point, base, chosen };
}

/**
 * The archive's newest restorable revision for `auto`: the last chain's end, when that chain follows
 * this cluster (its etcd cluster ID is the live one or one this cluster had) and its base is verified.
 */
export async function newestArchived(catalog: Catalog, chains: readonly ChainInfo[], o: { observation: ClusterObservation; lineage?: string[]; signal?: AbortSignal }): Promise<{ revision: number; chain: string; at: number } | undefined> {
  const known = new Set([...(o.lineage ?? []), ...(o.observation.clusterId ? [o.observation.clusterId] : [])]);
  for (const c of [...chains].reverse()) {
    if (known.size && !known.has(c.record.clusterId)) continue;
    const base = await catalog.get(c.record.base.snapshot, o.signal).catch(() => undefined);
    if (!base || !isVerified(base)) continue;
    return { revision: c.to, chain: c.record.chain, at: c.toAt };
  }
  return undefined;
}

/** A backup as a restore point (what the plan records of it). */
export function backupRestorePoint(record: SnapshotRecord, reason: string): RestorePoint {
  return {
    kind: 'backup',
    name: record.name,
    revision: record.revision,
    createdAt: record.createdAt,
    sha256: record.sha256,
    clusterId: record.clusterId,
    totalKeys: record.totalKeys,
    verified: isVerified(record),
    reason,
  };
}

/**
 * A backup is foreign when its record names another cluster, or when its etcd
 * cluster ID is neither the live cluster's nor one this cluster had before
 * (other backups, earlier recoveries). With no live member and no history
 * there is nothing to compare with, and it is accepted.
 */
function foreignReason(r: SnapshotRecord, cluster: string, o: ClusterObservation, lineage: string[]): string | undefined {
  if (r.cluster !== cluster) return `its record names cluster "${r.cluster}", not "${cluster}"`;
  const known = new Set(lineage);
  if (o.clusterId) known.add(o.clusterId);
  if (known.size && !known.has(r.clusterId)) {
    return `its etcd cluster ID ${r.clusterId} is not this cluster's${o.clusterId ? ` (${o.clusterId})` : ''} nor one it had before`;
  }
  return undefined;
}
