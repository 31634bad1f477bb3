import { EtcdRecoverError } from '../errors.js';
import { Catalog, isVerified, type SnapshotRecord } from '../snapshot/catalog.js';
import type { ClusterObservation } from './observation.js';
import type { RestorePoint } from './plan.js';

export type RestorePointRequest = 'auto' | 'live' | 'latest' | { name: string };

/** A member that can give a live snapshot: its etcd answers and it still has data. */
export function liveCandidates(o: ClusterObservation): { name: string; revision: number }[] {
  return o.members
    .filter((m) => m.status && !m.status.isLearner && m.hasData !== false)
    .map((m) => ({ name: m.name, revision: m.status!.revision }))
    .sort((a, b) => b.revision - a.revision);
}

/**
 * Chooses where to restore from: `auto` takes a live snapshot from a surviving
 * member with data when there is one (HyperShift's preferred path: nothing
 * since the last backup is lost), else the newest verified backup; `live`,
 * `latest` or a backup name force a choice. A backup of another cluster is
 * refused unless `allowForeign`.
 */
export async function resolveRestorePoint(opts: {
  catalog: Catalog;
  observation: ClusterObservation;
  request: RestorePointRequest;
  allowForeign?: boolean;
  /** etcd cluster IDs this cluster's recoveries have seen (restores change the ID). */
  lineage?: string[];
  signal?: AbortSignal;
}): Promise<{ point: RestorePoint; record?: SnapshotRecord; backups: SnapshotRecord[] }> {
  const { catalog, observation, request } = opts;
  const listing = await catalog.list(opts.signal);
  const backups = listing.snapshots;
  const live = liveCandidates(observation);

  if (request === 'live' || (request === 'auto' && live.length)) {
    if (!live.length) {
      throw new EtcdRecoverError('NO_RESTORE_POINT', 'no surviving member answers with data, so there is nothing to take a live snapshot from', {
        hint: 'restore from a backup: --restore-point latest (or name one with --snapshot)',
      });
    }
    const best = live[0]!;
    return {
      point: { kind: 'live', member: best.name, revision: best.revision, reason: request === 'live' ? 'requested' : `member ${best.name} survives with data (revision ${best.revision})` },
      backups,
    };
  }

  const lineageOf = (r: SnapshotRecord) => [...(opts.lineage ?? []), ...backups.filter((b) => b.name !== r.name).map((b) => b.clusterId)];
  let record: SnapshotRecord | undefined;
  const skipped: string[] = [];
  if (typeof request === 'object') {
    record = await catalog.get(request.name, opts.signal);
    const foreign = foreignReason(record, catalog.cluster, observation, lineageOf(record));
    if (foreign && !opts.allowForeign) {
      throw new EtcdRecoverError('SNAPSHOT_FOREIGN', `backup ${record.name} belongs to another cluster: ${foreign}`, {
        hint: 'choose a backup of this cluster (`backup list`), or pass --force-foreign if you really mean to restore this data here',
      });
    }
  } else {
    for (const b of backups.filter(isVerified)) {
      const foreign = foreignReason(b, catalog.cluster, observation, lineageOf(b));
      if (foreign && !opts.allowForeign) {
        skipped.push(`${b.name} (${foreign})`);
        continue;
      }
      record = b;
      break;
    }
    if (!record) {
      const unverified = backups.length ? ` (${backups.length} backup(s) exist but none is verified${skipped.length ? ` and of this cluster` : ''}: run \`backup verify --all\`, or name one with --snapshot)` : '';
      throw new EtcdRecoverError('NO_RESTORE_POINT', `no verified backup of cluster ${catalog.cluster} in ${catalog.store.description} and no surviving member with data${unverified}`, {
        hint: backups.length ? 'verify the backups, or pass --snapshot NAME' : 'check --bucket/--prefix/--cluster point at the right backups',
      });
    }
  }
  const reason =
    (typeof request === 'object' ? 'requested' : live.length ? 'requested latest' : 'newest verified backup (no member survives with data)') +
    (skipped.length ? `; skipped backups of another cluster: ${skipped.join(', ')}` : '');
  return { point: backupRestorePoint(record, reason), record, backups };
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
