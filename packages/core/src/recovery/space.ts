import { EtcdRecoverError } from '../errors.js';
import type { SnapshotRecord } from '../snapshot/catalog.js';

/**
 * What `etcdutl snapshot restore` writes beside the restored bbolt file: a new WAL whose first segment
 * is preallocated to etcd's segment size (64 MiB), plus a raft snapshot file (small).
 */
export const RESTORE_WAL_BYTES = 64 * 1024 * 1024;

export interface SpaceNeed {
  /** The snapshot file downloaded into the volume (0 when it is staged elsewhere or already there). */
  snapshot: number;
  /** The restored database (about the snapshot's bbolt size). */
  restoredDb: number;
  wal: number;
}

export function needTotal(n: SpaceNeed): number {
  return n.snapshot + n.restoredDb + n.wal;
}

/** What several members' restores on one filesystem need together. */
export function addNeeds(a: SpaceNeed, b: SpaceNeed): SpaceNeed {
  return { snapshot: a.snapshot + b.snapshot, restoredDb: a.restoredDb + b.restoredDb, wal: a.wal + b.wal };
}

/**
 * The free space one member's restore needs on the volume that holds its data. The old data is set
 * aside by a rename in the same filesystem: it stays where it is and needs no new space.
 */
export function restoreSpaceNeed(record: SnapshotRecord, o: { snapshotInVolume: boolean }): SpaceNeed {
  const snapshot = o.snapshotInVolume ? (record.objectSize || record.dbSize) : 0;
  const restoredDb = record.dbSize || record.objectSize;
  return { snapshot, restoredDb, wal: RESTORE_WAL_BYTES };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u ? v.toFixed(1) : v} ${units[u]} (${n} bytes)`;
}

export interface VolumeSpace {
  /** How the volume is named to the operator (a path, a PVC). */
  volume: string;
  members: string[];
  freeBytes: number;
  need: SpaceNeed;
}

export function describeNeed(n: SpaceNeed): string {
  return [n.snapshot ? `snapshot ${n.snapshot}` : undefined, `restored DB ${n.restoredDb}`, `WAL ${n.wal}`].filter(Boolean).join(' + ');
}

/** Throws NO_SPACE naming every volume that is short, with needed and free bytes; nothing has been stopped yet. */
export function refuseUnlessRoom(volumes: VolumeSpace[], progress: (m: string) => void): void {
  for (const v of volumes) {
    progress(`${v.volume} (${v.members.join(', ')}): ${formatBytes(v.freeBytes)} free, the restore needs ${formatBytes(needTotal(v.need))}`);
  }
  const short = volumes.filter((v) => v.freeBytes < needTotal(v.need));
  if (!short.length) return;
  throw new EtcdRecoverError(
    'NO_SPACE',
    `not enough free space for the restore; nothing was stopped or changed: ` +
      short
        .map((v) => `${v.volume} (${v.members.join(', ')}) needs ${needTotal(v.need)} bytes (${describeNeed(v.need)}; old data stays set aside in place) but has ${v.freeBytes} bytes free — ${formatBytes(needTotal(v.need) - v.freeBytes)} short`)
        .join('; '),
    { hint: 'grow the volume(s) or free space on them, then rerun the same command: it resumes from the space check' },
  );
}
