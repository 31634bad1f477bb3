/**
 * What a verification finds: the report, its defects, and the log that collects
 * them while the verifier streams through (the first MAX_DEFECTS listed, the
 * rest only counted).
 */
export type DefectCode =
  | 'EMPTY'
  | 'NOT_BBOLT'
  | 'GZIP'
  | 'TRUNCATED'
  | 'TRAILER_MISSING'
  | 'TRAILER_MISMATCH'
  | 'META_INVALID'
  | 'PAGE_OUT_OF_BOUNDS'
  | 'PAGE_ID_MISMATCH'
  | 'PAGE_TYPE'
  | 'PAGE_DOUBLE_REF'
  | 'PAGE_UNREACHABLE'
  | 'KEY_ORDER'
  | 'ELEMENT_BOUNDS'
  | 'BUCKET_MISSING';

export interface SnapshotDefect {
  code: DefectCode;
  page?: number;
  reason: string;
  fatal: boolean;
}

export interface SnapshotReport {
  /** No fatal defect (and trailer ok when required). */
  ok: boolean;
  /** Bytes consumed. */
  fileSize: number;
  hasTrailer: boolean;
  /** Hex sha256 of the bytes before the trailer (or of the whole input when there is no trailer). */
  sha256: string;
  /** Hex of the trailer bytes when present. */
  trailerSha256?: string;
  /** etcdutl-compatible CRC-32C (unsigned 32-bit). */
  hash: number;
  /** Main revision of the last key of bucket "key", as etcdutl. */
  revision: number;
  /**
   * As etcdutl 3.6 (its TotalKey): the number of live keys — distinct user keys
   * of bucket "key" whose latest revision is not a tombstone. See etcd-keys.ts.
   */
  totalKeys: number;
  /**
   * As etcdutl 3.5 (its TotalKey, which 3.6 redefined as totalKeys): every entry of every top-level
   * bucket — all revisions of bucket "key" (history and tombstones too) plus meta, members, lease,
   * auth, … entries. The sum of `buckets`.
   */
  totalEntries: number;
  /** Keys etcd serves: totalKeys without the empty key of revision-bump markers. */
  userKeys: number;
  /** Revision-bump markers (etcdutl restore --bump-revision) in the key bucket. */
  bumpMarkers: number;
  /**
   * The snapshot was taken while a compaction was pending (meta/scheduledCompactRev >
   * finishedCompactRev): old records are still there and the live-key counts are approximate.
   */
  compactionPending: boolean;
  /** meta/finishedCompactRev (0: never compacted). etcd's store revision after a restore is max(revision, this, 1). */
  compactRevision: number;
  /** High-water mark × page size, as etcdutl. */
  totalSize: number;
  /** Storage version (meta/storageVersion), e.g. "3.6.0", when present. */
  version?: string;
  pageSize: number;
  txid: number;
  /** High-water mark: pages in use. */
  pages: number;
  /** Entries per top-level bucket (for "key": revisions, incl. history and tombstones). */
  buckets: Record<string, number>;
  /** At most MAX_DEFECTS entries; see omittedDefects. */
  defects: SnapshotDefect[];
  /** Defects found beyond the first MAX_DEFECTS (not listed). */
  omittedDefects?: number;
}

/** Defects listed in a report; further ones are only counted. */
export const MAX_DEFECTS = 100;

/** The defects found so far: the first MAX_DEFECTS listed, the rest counted; whether any is fatal. */
export class DefectLog {
  readonly list: SnapshotDefect[] = [];
  omitted = 0;
  fatal = false;

  add(code: DefectCode, page: number | undefined, reason: string, fatal: boolean): void {
    if (fatal) this.fatal = true;
    if (this.list.length >= MAX_DEFECTS) {
      this.omitted++;
      return;
    }
    const d: SnapshotDefect = { code, reason, fatal };
    if (page !== undefined) d.page = page;
    this.list.push(d);
  }
}

/** One human line per defect, e.g. "KEY_ORDER (fatal) page 123: key order violated in leaf (…)". */
export function describeDefects(report: SnapshotReport): string {
  const lines = report.defects.map(
    (d) => `${d.code} (${d.fatal ? 'fatal' : 'warning'})${d.page !== undefined ? ` page ${d.page}` : ''}: ${d.reason}`,
  );
  if (report.omittedDefects) lines.push(`… and ${report.omittedDefects} more defect(s) not listed`);
  return lines.join('\n');
}
