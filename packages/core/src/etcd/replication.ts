/**
 * What continuous archiving needs from etcd: the ordered stream of changes from a revision on (the
 * archiver), and a way to apply them again one revision at a time (the point-in-time replay).
 * Only etcd3-replication.ts implements these over the etcd3 client.
 */

/** One change of one key, as etcd's watch reports it. Revisions and lease IDs are decimal. */
export interface KvEvent {
  type: 'put' | 'delete';
  key: Buffer;
  /** The new value (puts). */
  value?: Buffer;
  /** The lease the key is attached to after a put; "0" or absent: none. */
  lease?: string;
  /** After a put: the key's create revision and version (1 = created by this put). */
  createRevision?: number;
  version?: number;
}

/** Every change of one revision (one write transaction), and when the archiver saw it. */
export interface RevisionBatch {
  revision: number;
  /** Milliseconds since the epoch when the archiver received it (etcd keeps no timestamps). */
  at: number;
  events: KvEvent[];
}

/** Thrown by a watch whose start revision etcd has compacted away. */
export class CompactedError extends Error {
  constructor(
    readonly requested: number,
    readonly compactRevision: number | undefined,
  ) {
    super(`revision ${requested} has been compacted${compactRevision ? ` (etcd keeps revisions from ${compactRevision})` : ''}`);
  }
}

export interface WatchSession {
  /** Stops the watch; the iterator ends. */
  close(): void;
  /** Batches in revision order; throws CompactedError, or the watch's error. */
  batches(): AsyncIterable<RevisionBatch[]>;
}

export interface ChangeSource {
  /** Watches every key from `fromRevision` on. */
  watchFrom(fromRevision: number): WatchSession;
  /** A lease's granted TTL in seconds; undefined when it has expired or was revoked. */
  leaseTtl(lease: string): Promise<number | undefined>;
  /** Whether etcd still holds the history from `revision` on (not compacted away). */
  hasHistoryFrom(revision: number): Promise<boolean>;
  close(): void;
}

export interface ReplayTarget {
  /** Applies one revision's changes as one transaction; returns the revision etcd gave it. */
  apply(events: readonly KvEvent[]): Promise<number>;
  /** Grants a lease with exactly this ID. */
  grantLease(lease: string, ttlSeconds: number): Promise<void>;
  /** Renews leases (keeps them from expiring while the replay runs). */
  keepAlive(leases: readonly string[]): Promise<void>;
  close(): void;
}
