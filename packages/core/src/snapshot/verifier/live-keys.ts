/**
 * etcd keyspace analysis: the live-key count of bucket `key` (etcdutl's
 * TotalKey; the method is in etcd-keys.ts), page by page as the leaves stream by.
 *
 * A page's contribution depends on the compacted revision
 * (meta/finishedCompactRev), known only once the meta bucket has been read —
 * right away when the live root page holds it inline, else after the pass. The
 * pages parsed before it is known keep their records as varint(Δmain·2 + D),
 * about 2 bytes a record, until setCompactRev folds them into counts. The tree
 * walk then adds up the pages of the live `key` bucket (countPage, countInline).
 */
import { ELEMENT_SIZE, LEAF_FLAG_BUCKET, PAGE_HEADER_SIZE, beU64, u32 } from './bbolt-format.js';
import { getVarint, kvError, kvVersion, putVarint, revisionKeyProblem, varintEnd } from './etcd-keys.js';
import { doubledFor, grown } from './page-table.js';
import { ByteBuf, hexKey } from './summary-keys.js';

/** Outcome of analyseKv (reused scratch object). */
interface KvResult {
  error: string | null;
  /** Σ s over the records (s = [version = 1] − [tombstone]). */
  sum: number;
  /** Live-key contribution, when the compacted revision was given. */
  contrib: number;
  /** Records with an empty value: the markers etcdutl --bump-revision writes (user key ""). */
  markers: number;
}

/**
 * Analyses the records of a `key` bucket leaf at b[p..) (already bounds-checked)
 * for the live-key count (see etcd-keys.ts). With compactRev ≥ 0 computes the
 * contribution; otherwise appends per-record detail — varint(Δmain·2 + D) — to `detail`.
 */
function analyseKv(b: Uint8Array, p: number, count: number, compactRev: number, detail: ByteBuf | null, out: KvResult): boolean {
  let sum = 0;
  let contrib = 0;
  let markers = 0;
  let prevMain = 0;
  out.error = null;
  for (let i = 0; i < count; i++) {
    const e = p + PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
    const k0 = e + u32(b, e + 4);
    const ks = u32(b, e + 8);
    const vs = u32(b, e + 12);
    const problem = revisionKeyProblem(b, k0, ks);
    if (problem) {
      out.error = `record ${i} key ${hexKey(b.subarray(k0, k0 + ks))} is not a revision (${problem})`;
      return false;
    }
    const tomb = ks === 18 && b[k0 + 17] === 0x74;
    // A record with an empty value is a revision-bump marker (user key ""): counted once, apart.
    if (vs === 0 && !tomb) {
      markers++;
      continue;
    }
    // A nested bucket element has a nil value for ForEach: an empty KeyValue.
    const version = u32(b, e) & LEAF_FLAG_BUCKET ? 0 : kvVersion(b, k0 + ks, k0 + ks + vs);
    if (version < 0) {
      out.error = `record ${i} (revision key ${hexKey(b.subarray(k0, k0 + ks))}): value is not a valid mvccpb.KeyValue (${kvError})`;
      return false;
    }
    const si = (version === 1 ? 1 : 0) - (tomb ? 1 : 0);
    sum += si;
    const main = beU64(b, k0);
    if (compactRev >= 0) contrib += main <= compactRev ? (tomb ? 0 : 1) : si;
    else {
      putVarint(detail!, (main - prevMain) * 2 + (version === 1 ? 0 : 1));
      prevMain = main;
    }
  }
  out.sum = sum;
  out.contrib = contrib;
  out.markers = markers;
  return true;
}

// Analysis state of a leaf.
const KV_NONE = 0; // keys are not revisions (not a `key` bucket page)
const KV_PENDING = 1; // compacted revision unknown yet: record detail kept
const KV_RESOLVED = 2; // contribution to the live-key count known
const KV_ERROR = 3; // etcdutl would fail on it, see errors

/** The live-key count of bucket `key`, and the per-page state behind it. */
export class LiveKeyCount {
  /** meta/finishedCompactRev of the live tree; -1 until known. */
  compactRev = -1;
  /** meta/scheduledCompactRev > finishedCompactRev: see SnapshotReport.compactionPending. */
  compactionPending = false;
  /** Revision-bump markers seen (see analyseKv). */
  bumpMarkers = 0;
  /** Set by settle(), after the walk: SnapshotReport.totalKeys and .userKeys. */
  totalKeys = 0;
  userKeys = 0;
  private liveKeys = 0;

  // Per page id, for the leaves analysed.
  private size = 0;
  private state = new Uint8Array(0);
  /** KV_PENDING: Σ s of its records. KV_RESOLVED: its live-key contribution. */
  private value = new Int32Array(0);
  /** KV_PENDING: offset of its record detail, and its record count. */
  private detailOff = new Uint32Array(0);
  private records = new Uint16Array(0);
  private readonly errors = new Map<number, string>();
  /** Per-record detail of the pages analysed before the compacted revision is known. */
  private detail = new ByteBuf(1 << 12);
  private readonly scratch: KvResult = { error: null, sum: 0, contrib: 0, markers: 0 };

  /** Analyses leaf `pgid` at b[p..), already bounds-checked, whose `count` records look like revisions. */
  addPage(b: Uint8Array, p: number, count: number, pgid: number): void {
    this.ensure(pgid);
    const r = this.scratch;
    const ra = this.detail;
    const start = ra.len;
    if (analyseKv(b, p, count, this.compactRev, ra, r)) {
      this.bumpMarkers += r.markers;
      if (this.compactRev >= 0) {
        this.state[pgid] = KV_RESOLVED;
        this.value[pgid] = r.contrib;
      } else {
        this.state[pgid] = KV_PENDING;
        this.value[pgid] = r.sum;
        this.detailOff[pgid] = start;
        // The detail holds one varint per record counted: a marker is skipped and writes none. (Counting
        // every record read one varint past the page's detail: the next page's, or stale memory — a key
        // too many, now and then, in a fresh restore's snapshot.)
        this.records[pgid] = count - r.markers;
      }
    } else {
      ra.len = start;
      this.state[pgid] = KV_ERROR;
      this.errors.set(pgid, r.error!);
    }
  }

  /** Fixes the compacted revision and resolves the pages kept pending. */
  setCompactRev(c: number): void {
    this.compactRev = c;
    for (let pgid = 2; pgid < this.size; pgid++) {
      if (this.state[pgid] === KV_PENDING) {
        this.value[pgid] = this.resolve(pgid, c);
        this.state[pgid] = KV_RESOLVED;
      }
    }
    this.detail = new ByteBuf(64);
  }

  /**
   * Counts leaf `pgid` of the live `key` bucket (the walk, after setCompactRev).
   * Returns null when counted, else why etcdutl fails on it: the analysis error,
   * or undefined when its keys are not revisions.
   */
  countPage(pgid: number): string | null | undefined {
    const st = pgid < this.size ? this.state[pgid]! : KV_NONE;
    if (st === KV_RESOLVED) {
      this.liveKeys += this.value[pgid]!;
      return null;
    }
    return st === KV_ERROR ? this.errors.get(pgid)! : undefined;
  }

  /**
   * Counts an inline `key` bucket of `count` records; `page` is a copy of its
   * inline page (undefined when its keys are not revisions). Returns null when
   * counted, else why etcdutl fails on it.
   */
  countInline(page: Buffer | undefined, count: number): string | null {
    const res = this.scratch;
    if (page && analyseKv(page, 0, count, this.compactRev, null, res)) {
      this.liveKeys += res.contrib;
      this.bumpMarkers += res.markers;
      return null;
    }
    return page ? res.error! : 'its keys are not revisions';
  }

  /**
   * The walk has counted every live page. Every revision bump (etcdutl restore
   * --bump-revision) adds a record for the empty key "": etcdutl's set counts
   * that key once; etcd never serves it. Markers are left out of the generation
   * count (analyseKv) and added back here.
   */
  settle(): void {
    this.totalKeys = this.liveKeys + (this.bumpMarkers > 0 ? 1 : 0);
    this.userKeys = this.liveKeys;
  }

  private resolve(pgid: number, c: number): number {
    const buf = this.detail.buf;
    const n = this.records[pgid]!;
    let i = this.detailOff[pgid]!;
    let main = 0;
    let add = 0;
    for (let r = 0; r < n; r++) {
      const v = getVarint(buf, i);
      i = varintEnd;
      const d = v % 2;
      main += (v - d) / 2;
      if (main > c) break;
      add += d;
    }
    return this.value[pgid]! + add;
  }

  private ensure(pgid: number): void {
    if (pgid < this.size) return;
    this.size = pgid + 1;
    if (pgid < this.state.length) return;
    const cap = doubledFor(pgid, this.state.length);
    this.state = grown(this.state, cap);
    this.value = grown(this.value, cap);
    this.detailOff = grown(this.detailOff, cap);
    this.records = grown(this.records, cap);
  }
}
