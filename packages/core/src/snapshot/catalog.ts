import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { readJson, type ObjectStore } from '../store/object-store.js';
import { parseSnapshotName } from './snapshot-name.js';
import { mapLimit } from '../concurrency.js';
import type { AgeKeys } from './encryption.js';

/** The newest record format this tool reads. Plain backups are written as 1, encrypted ones as 2 (an older tool says "upgrade", not "corrupt"). */
export const RECORD_FORMAT_VERSION = 2;
export const PLAIN_RECORD_FORMAT = 1;
export const ENCRYPTED_RECORD_FORMAT = 2;

/** How a snapshot object is encrypted (client side, age): public facts only, never a key. */
export interface RecordEncryption {
  format: 'age';
  /** The age recipients (public keys) the object was encrypted for. */
  recipients: string[];
  /** sha256 of the object's bytes (the ciphertext) as uploaded: proves a copy or a re-encryption without any key. */
  objectSha256: string;
}

export interface VerificationResult {
  ok: boolean;
  at: string;
  /** "create": verified in the same pass as the upload; "verify": re-read from the bucket later. */
  by: 'create' | 'verify' | 'restore';
  sha256: string;
  hash: number;
  revision: number;
  totalKeys: number;
  defects: string[];
}

/** The kinds of resource a backup's companions hold (snapshot/companions.ts). */
export type CompanionKind = 'Secret' | 'ConfigMap';

/** What the record says of its companions (public facts: names, never values). */
export interface RecordCompanions {
  objectKey: string;
  objectSize: number;
  /** sha256 of the plaintext JSON. */
  sha256: string;
  items: { kind: CompanionKind; name: string }[];
  missing: { kind: CompanionKind; name: string; reason?: string }[];
}

/** The catalog record stored beside each snapshot object; written last. */
export interface SnapshotRecord {
  formatVersion: number;
  name: string;
  cluster: string;
  /** etcd's cluster ID (hex) from the snapshot stream header. */
  clusterId: string;
  sourceMember: { id: string; name?: string; endpoint: string };
  /** The store revision at the point in time of the snapshot. */
  revision: number;
  /** Compact revision is not recorded by etcd in the snapshot header; the last key revision is. */
  raftIndex: number;
  raftTerm: number;
  etcdVersion: string;
  storageVersion?: string;
  /** bbolt size (high-water mark × page size), as `etcdutl snapshot status` totalSize. */
  dbSize: number;
  /** Bytes of the object in the bucket (the db plus the 32-byte trailer; encrypted: the age file). */
  objectSize: number;
  /** Set when the object is age-encrypted (`sha256`, `hash` and the key counts are of the plaintext). */
  encryption?: RecordEncryption;
  /** The companion resources saved beside the snapshot (names only; the values are in the encrypted object). */
  companions?: RecordCompanions;
  totalKeys: number;
  /** Keys etcd serves (totalKeys without revision-bump markers); absent in records of older tools. */
  userKeys?: number;
  /** Taken while a compaction was pending: the key counts are approximate (see the verifier). */
  compactionPending?: boolean;
  /** The snapshot's finished compaction revision, when it was ever compacted (the store revision is max(revision, compactRevision, 1)). */
  compactRevision?: number;
  /** etcdutl-compatible CRC-32C of the keyspace. */
  hash: number;
  /** sha256 of the db bytes (equals etcd's trailer). */
  sha256: string;
  createdAt: string;
  completedAt: string;
  durationMs: number;
  toolVersion: string;
  objectKey: string;
  /** Latest verification; a snapshot counts as verified when ok and sha256 matches. */
  verification?: VerificationResult;
  labels?: Record<string, string>;
  /**
   * Set by `backup create` when the keyspace collapsed against the newest previous trusted
   * backup (suspectMark in capture.ts): such a backup is no restore point for latest/auto and does not
   * let prune delete older trusted backups, until confirmed (`backup confirm NAME`).
   */
  suspect?: SuspectMark;
  /**
   * False only for a backup imported from a raw bbolt copy (`member/snap/db`): the object has no
   * sha256 trailer, so readers accept it without one — for this record only — and prove its bytes
   * with the record's `sha256` instead (taken when it was imported). Absent: a trailer is required.
   */
  hasTrailer?: boolean;
  /** Set by `backup import`: which tool's backup this was and what came with it. */
  provenance?: RecordProvenance;
}

/** Where an imported backup came from (`backup import`). */
export interface RecordProvenance {
  tool: 'etcdctl' | 'raw-db' | 'csm' | 'okd' | 'k3s' | 'gardener' | 'kops';
  /** The file, archive or folder imported. */
  originalName: string;
  /** The snapshot's path inside the archive or folder. */
  innerName?: string;
  /** When the original backup was taken (from its name or metadata, else the file's time). */
  originalTime?: string;
  /** How it was packed, e.g. "tar+gzip", "zip", "lzw". */
  compression?: string;
  /** What was missing or assumed, e.g. "no trailer: integrity not proven". */
  notes: string[];
  /** Files that came with it, kept beside the snapshot (age-encrypted when backups are). */
  extras?: { name: string; objectKey: string; sha256: string; encrypted?: boolean }[];
  /** Where it was imported from (a path or s3:// URL) and when. */
  source?: string;
  importedAt?: string;
}

/** Why a backup is suspect, and (once an operator accepted it) who confirmed it. */
export interface SuspectMark {
  /** One line per rule that fired, e.g. "keys fell from 2000 to 0 (0%, below 50%)". */
  reasons: string[];
  /** The backup it was compared with: the newest previous trusted backup. */
  baseline: { name: string; revision: number; userKeys: number; dbSize: number };
  /** Set by `backup confirm`: the backup is accepted as the truth and no longer suspect. */
  confirmed?: { at: string; by: string; reason?: string };
}

export function isVerified(r: SnapshotRecord): boolean {
  return Boolean(r.verification?.ok && r.verification.sha256 === r.sha256);
}

/** Marked suspect at creation and not confirmed since (a confirmed one is no longer suspect). */
export function isSuspect(r: SnapshotRecord): boolean {
  return Boolean(r.suspect && !r.suspect.confirmed);
}

/**
 * A snapshot built from the archive for a point-in-time restore: the data of an older revision,
 * taken now. It is restored by name only: never picked as "the newest backup", never counted by
 * retention (which would let it push out a real one).
 */
export function isPointInTime(r: SnapshotRecord): boolean {
  return r.labels?.['reason'] === 'point-in-time';
}

/** A restore point the tool may pick on its own (latest/auto, prune's baseline): verified, not an unconfirmed suspect, not a point-in-time build. */
export function isTrusted(r: SnapshotRecord): boolean {
  return isVerified(r) && !isSuspect(r) && !isPointInTime(r);
}

/** Keys etcd serves (userKeys; totalKeys in records of older tools). */
export function keysOf(r: Pick<SnapshotRecord, 'userKeys' | 'totalKeys'>): number {
  return r.userKeys ?? r.totalKeys;
}

export function parseRecord(text: string | Buffer, key: string): SnapshotRecord {
  let v: unknown;
  try {
    v = JSON.parse(text.toString());
  } catch {
    throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `catalog record ${key} is not valid JSON`);
  }
  const r = v as Partial<SnapshotRecord>;
  if (typeof r !== 'object' || r === null || typeof r.name !== 'string' || typeof r.sha256 !== 'string' || typeof r.revision !== 'number') {
    throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `catalog record ${key} lacks required fields`);
  }
  if ((r.formatVersion ?? 0) > RECORD_FORMAT_VERSION) {
    throw new EtcdRecoverError('CONFIG', `catalog record ${key} has format ${r.formatVersion}, newer than this tool understands (${RECORD_FORMAT_VERSION})`, {
      hint: 'upgrade kubectl-etcd_recover',
    });
  }
  return r as SnapshotRecord;
}

export interface CatalogListing {
  /** Complete backups (record present), newest first. */
  snapshots: SnapshotRecord[];
  /** Snapshot objects with no record: interrupted or in-progress uploads. Never listed as backups. */
  incomplete: { name: string; size: number; lastModified?: Date }[];
  /** Records that could not be read. */
  unreadable: { key: string; error: string }[];
}

/** The set of backups of one cluster in the bucket. */
export class Catalog {
  constructor(
    readonly store: ObjectStore,
    readonly cluster: string,
    /** The age keys: recipients encrypt new backups; identities open encrypted ones. None: backups are plain. */
    readonly keys?: AgeKeys,
  ) {}

  async list(signal?: AbortSignal): Promise<CatalogListing> {
    const prefix = layout.snapshotsPrefix(this.cluster);
    const objects = new Map<string, { size: number; lastModified?: Date }>();
    const records: string[] = [];
    for await (const o of this.store.list(prefix, signal)) {
      const rel = o.key.slice(prefix.length);
      if (rel.endsWith('.json')) records.push(rel.slice(0, -5));
      else if (rel.endsWith('.db')) objects.set(rel.slice(0, -3), { size: o.size, ...(o.lastModified ? { lastModified: o.lastModified } : {}) });
    }
    const snapshots: SnapshotRecord[] = [];
    const unreadable: { key: string; error: string }[] = [];
    await mapLimit(records, 16, async (name) => {
      const key = layout.snapshotRecord(this.cluster, name);
      try {
        const got = await readJson<unknown>(this.store, key, signal);
        if (!got) return;
        const rec = parseRecord(JSON.stringify(got.value), key);
        if (!objects.has(name)) {
          unreadable.push({ key, error: 'record present but its snapshot object is missing' });
          return;
        }
        snapshots.push(rec);
      } catch (e) {
        if (e instanceof EtcdRecoverError && e.code !== 'SNAPSHOT_CORRUPT') throw e;
        unreadable.push({ key, error: (e as Error).message });
      }
    });
    const recorded = new Set(records);
    const incomplete = [...objects.entries()]
      .filter(([name]) => !recorded.has(name))
      .map(([name, o]) => ({ name, ...o }));
    snapshots.sort(newestFirst);
    return { snapshots, incomplete, unreadable };
  }

  async get(name: string, signal?: AbortSignal): Promise<SnapshotRecord> {
    const key = layout.snapshotRecord(this.cluster, name);
    const got = await this.store.read(key, signal);
    if (!got) {
      throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `no backup named ${name} for cluster ${this.cluster} in ${this.store.description}`, {
        hint: 'run `kubectl etcd-recover backup list` to see the backups',
      });
    }
    return parseRecord(got.body, key);
  }

  async latest(opts: { verifiedOnly: boolean }, signal?: AbortSignal): Promise<SnapshotRecord | undefined> {
    const { snapshots } = await this.list(signal);
    return snapshots.find((s) => !opts.verifiedOnly || isVerified(s));
  }

  /**
   * Accepts a suspect backup as the truth (`backup confirm`): records who and when in its
   * `suspect.confirmed`; from then on it is trusted (if verified) and a baseline for later backups.
   * Idempotent; refuses a backup that was never marked suspect.
   */
  async confirmSuspect(name: string, by: { by: string; reason?: string; at?: Date }, signal?: AbortSignal): Promise<SnapshotRecord> {
    const record = await this.get(name, signal);
    if (!record.suspect) {
      throw new EtcdRecoverError('PRECONDITION', `backup ${name} is not suspect: there is nothing to confirm`, {
        hint: 'run `kubectl etcd-recover backup list` to see which backups are suspect',
      });
    }
    if (record.suspect.confirmed) return record;
    const confirmed = { at: (by.at ?? new Date()).toISOString(), by: by.by, ...(by.reason ? { reason: by.reason } : {}) };
    const next: SnapshotRecord = { ...record, suspect: { ...record.suspect, confirmed } };
    await this.writeRecord(next, signal);
    return next;
  }

  async writeRecord(record: SnapshotRecord, signal?: AbortSignal): Promise<void> {
    await this.store.put(layout.snapshotRecord(this.cluster, record.name), JSON.stringify(record, null, 2) + '\n', {
      contentType: 'application/json',
      ...(signal ? { signal } : {}),
    });
  }

  /** Deletes a backup: the record first (so a crash leaves an unlisted orphan, never a listed backup without data). */
  async delete(name: string, signal?: AbortSignal): Promise<void> {
    // What came with it (an import's extras) is named only in the record: read it before the record goes.
    const extras = (await this.get(name, signal).catch(() => undefined))?.provenance?.extras ?? [];
    await this.store.delete(layout.snapshotRecord(this.cluster, name), signal);
    await this.store.delete(layout.snapshotObject(this.cluster, name), signal);
    await this.store.delete(layout.companionsObject(this.cluster, name), signal);
    for (const x of extras) await this.store.delete(x.objectKey, signal);
  }

  async deleteIncomplete(name: string, signal?: AbortSignal): Promise<void> {
    await this.store.delete(layout.snapshotObject(this.cluster, name), signal);
    await this.store.delete(layout.companionsObject(this.cluster, name), signal);
  }
}

export function newestFirst(a: SnapshotRecord, b: SnapshotRecord): number {
  const ta = Date.parse(a.createdAt);
  const tb = Date.parse(b.createdAt);
  if (ta !== tb) return tb - ta;
  return b.revision - a.revision;
}

export function createdAtOf(name: string): Date | undefined {
  return parseSnapshotName(name)?.createdAt;
}
