import { EtcdRecoverError } from '../errors.js';
import { Catalog, isTrusted, isVerified, type SnapshotRecord } from '../snapshot/catalog.js';
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
