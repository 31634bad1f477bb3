/**
 * Native, streaming verifier for etcd snapshot files (bbolt databases).
 *
 * One sequential pass over the bytes, in file order, with memory bounded by a
 * small per-page summary (32 bytes of fixed fields + the first/last key of
 * each leaf and one key per branch element, each truncated to 64 bytes — about
 * 70 bytes per page for etcd), plus full detail only for leaves holding bucket
 * elements (the root bucket), plus ~2 bytes per `key` record for the pages seen
 * before the live root page (see etcd-keys.ts: etcdutl's live-key count).
 *
 * Pages arrive in file order but the B+tree has to be walked in key order, so
 * each leaf is summarised by the CRC-32C of the concatenation k1 v1 k2 v2 …
 * (values of nested-bucket elements excluded, as bbolt's ForEach yields them as
 * nil) and its byte length. After the pass, the tree is walked from the active
 * meta's root and the per-page CRCs are joined with crc32cCombine, giving
 * exactly the hash `etcdutl snapshot status` computes:
 *
 *   h = crc32c(); for each top-level bucket b (key order): h.Write(name);
 *   for each k, v in b (key order): h.Write(k); h.Write(v)
 *
 * Structural checks mirror bbolt's tx.Check(): page bounds, page ids, page
 * types, multiple references, reachable-and-freed, unreachable-and-unfreed,
 * key order within pages, against the parent's separator keys and across
 * sibling subtrees, element bounds.
 *
 * Every page slot below the high-water mark is parsed speculatively as it
 * streams by (we cannot know yet whether it is reachable, free, or the
 * continuation of an overflow page); parse problems are recorded and only
 * reported if the walk reaches that page.
 *
 * Pages are parsed straight from the caller's chunk when they lie inside it;
 * only pages straddling chunks (and multi-page spans) are copied. The sha256
 * runs inline, or in a worker thread (parallelHash) for large local files.
 *
 * What cannot be detected: without the sha256 trailer, a flipped bit inside a
 * value (or any byte not covered by structure: padding, free pages, a meta
 * page outside its checksummed 64 bytes) changes no structure and bbolt has no
 * per-page checksums, so it goes unnoticed — as it does for `etcdutl`. The
 * reported hash changes, though, so comparing it with the hash recorded at
 * backup time does catch it.
 */
import { readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { crc32c, crc32cCombine } from './crc32c.js';
import { InlineSha, WorkerSha, type ShaResult, type ShaSink } from './sha-sink.js';
import { getVarint, kvError, kvVersion, putVarint, revisionKeyProblem, varintEnd } from './etcd-keys.js';
import {
  BUCKET_HEADER_SIZE, ELEMENT_SIZE, FLAG_BRANCH, FLAG_FREELIST, FLAG_LEAF, FREELIST_COUNT_OVERFLOW, GZIP_MAGIC0, GZIP_MAGIC1,
  LEAF_FLAG_BUCKET, MAGIC, META1_PROBE_OFFSETS, META_BODY_OFFSET, META_SIZE, PAGE_HEADER_SIZE, TRAILER_ALIGN, TRAILER_SIZE,
  beU64, mainRevision, pageTypeName, parseMeta, storageVersionString, u16, u32, u64, type MetaInfo,
} from './bbolt-format.js';

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
  /** Keys etcd serves: totalKeys without the empty key of revision-bump markers. */
  userKeys: number;
  /** Revision-bump markers (etcdutl restore --bump-revision) in the key bucket. */
  bumpMarkers: number;
  /**
   * The snapshot was taken while a compaction was pending (meta/scheduledCompactRev >
   * finishedCompactRev): old records are still there and the live-key counts are approximate.
   */
  compactionPending: boolean;
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

export interface VerifyOptions {
  /** A missing sha256 trailer is fatal (default false: reported as a warning). */
  requireTrailer?: boolean;
  /**
   * Compute the sha256 in a worker thread, in parallel with page parsing
   * (default false; verifySnapshotFile turns it on for files ≥ 64 MiB).
   */
  parallelHash?: boolean;
}

/** Defects listed in a report; further ones are only counted. */
export const MAX_DEFECTS = 100;
/** Bytes of a key kept in the per-page summaries. */
const MAX_KEY = 64;
/** Largest page (with its overflow) assembled in memory. */
const MAX_SPAN = 256 * 1024 * 1024;
/** Deepest B+tree nesting walked (bbolt trees are a handful of levels deep). */
const MAX_DEPTH = 256;
/** Bytes buffered at most while looking for the page size when meta 0 is unreadable. */
const HEAD_LIMIT = META1_PROBE_OFFSETS[META1_PROBE_OFFSETS.length - 1]! + 4096;

// Page kinds in the per-page summary.
const K_NONE = 0; // slot not received
const K_BRANCH = 2;
const K_LEAF = 3;
const K_FREELIST = 4;
const K_OTHER = 5; // meta/unknown flags in a data slot
const K_ID_MISMATCH = 6;
const K_ERROR = 7; // parse failed, see errors map
const K_PENDING = 8; // multi-page span still being assembled

// `key` bucket analysis state of a leaf (see etcd-keys.ts).
// 0: keys are not revisions (not a `key` bucket page)
const KV_PENDING = 1; // compacted revision unknown yet: record detail kept
const KV_RESOLVED = 2; // contribution to the live-key count known
const KV_ERROR = 3; // etcdutl would fail on it, see kvErrors

// ------------------------------------------------------------ small pieces ---

/** A growable byte buffer. */
class ByteBuf {
  buf: Buffer;
  len = 0;
  constructor(cap: number) {
    this.buf = Buffer.allocUnsafe(cap);
  }
  reserve(extra: number): void {
    const need = this.len + extra;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const nb = Buffer.allocUnsafe(cap);
    this.buf.copy(nb, 0, 0, this.len);
    this.buf = nb;
  }
  append(src: Uint8Array, start: number, n: number): void {
    this.reserve(n);
    if (n > 64) {
      this.buf.set(src.subarray(start, start + n), this.len);
    } else {
      const d = this.buf;
      let o = this.len;
      for (let i = 0; i < n; i++) d[o++] = src[start + i]!;
    }
    this.len += n;
  }
}

/** A key as kept in summaries: a prefix of at most MAX_KEY bytes, and whether it was cut. */
interface Key {
  b: Uint8Array;
  t: boolean;
}

function lenByte(n: number): number {
  return n > MAX_KEY ? MAX_KEY | 0x80 : n;
}

/** Byte-wise compare of a[ao..ao+al) and b[bo..bo+bl). */
function cmpBytes(a: Uint8Array, ao: number, al: number, b: Uint8Array, bo: number, bl: number): number {
  const n = al < bl ? al : bl;
  if (n > 48) {
    const c = Buffer.compare(a.subarray(ao, ao + n), b.subarray(bo, bo + n));
    return c !== 0 ? c : al - bl;
  }
  for (let i = 0; i < n; i++) {
    const d = a[ao + i]! - b[bo + i]!;
    if (d !== 0) return d;
  }
  return al - bl;
}

/** Compares possibly truncated keys; NaN when the prefixes cannot decide. */
function cmpKey(a: Key, b: Key): number {
  const al = a.b.length;
  const bl = b.b.length;
  const n = al < bl ? al : bl;
  for (let i = 0; i < n; i++) {
    const d = a.b[i]! - b.b[i]!;
    if (d !== 0) return d;
  }
  if (!a.t && !b.t) return al - bl;
  if (!a.t && al === n && (bl > n || b.t)) return -1;
  if (!b.t && bl === n && (al > n || a.t)) return 1;
  return NaN;
}

function hexKey(k: Key | Uint8Array): string {
  const b = k instanceof Uint8Array ? k : k.b;
  const cut = !(k instanceof Uint8Array) && k.t;
  const shown = b.length > 40 ? b.subarray(0, 40) : b;
  return Buffer.from(shown.buffer, shown.byteOffset, shown.byteLength).toString('hex') + (cut || shown.length < b.length ? '…' : '');
}

function bytesToString(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
}

/** Result of scanning a leaf page's elements (reused scratch object). */
interface LeafScan {
  code: DefectCode | null;
  reason: string;
  crc: number;
  len: number;
  firstOff: number;
  firstLen: number;
  lastOff: number;
  lastLen: number;
  hasBucket: boolean;
  /** Value of key "storageVersion" (meta bucket), -1 when absent. */
  svOff: number;
  svLen: number;
  /** Value of key "finishedCompactRev" (meta bucket), -1 when absent. */
  fcrOff: number;
  fcrLen: number;
  /** Value of key "scheduledCompactRev" (meta bucket), -1 when absent. */
  scrOff: number;
  scrLen: number;
}

function newScan(): LeafScan {
  return {
    code: null, reason: '', crc: 0, len: 0, firstOff: 0, firstLen: 0, lastOff: 0, lastLen: 0, hasBucket: false,
    svOff: -1, svLen: 0, fcrOff: -1, fcrLen: 0, scrOff: -1, scrLen: 0,
  };
}

const SV_KEY = Buffer.from('storageVersion', 'latin1');
const FCR_KEY = Buffer.from('finishedCompactRev', 'latin1');
const SCR_KEY = Buffer.from('scheduledCompactRev', 'latin1');

function keyIs(b: Uint8Array, o: number, key: Buffer): boolean {
  for (let i = 0; i < key.length; i++) if (b[o + i] !== key[i]) return false;
  return true;
}

/** meta/finishedCompactRev holds a revision key; the compacted revision is its main part. */
function compactRevOf(b: Uint8Array, off: number, len: number): number {
  return len >= 8 ? mainRevision(b.subarray(off, off + 8)) : 0;
}

/**
 * Scans the leaf elements of a page at b[p..end): bounds, strict key order,
 * and the CRC-32C of k1 v1 k2 v2 … (bucket values excluded). Returns false with
 * s.code/s.reason set on the first problem.
 */
function scanLeaf(b: Uint8Array, p: number, end: number, count: number, s: LeafScan): boolean {
  s.code = null;
  s.hasBucket = false;
  s.svOff = -1;
  s.fcrOff = -1;
  s.scrOff = -1;
  s.crc = 0;
  s.len = 0;
  s.firstOff = s.lastOff = 0;
  s.firstLen = s.lastLen = 0;
  const elems = p + PAGE_HEADER_SIZE;
  const dataStart = elems + count * ELEMENT_SIZE;
  if (dataStart > end) {
    s.code = 'ELEMENT_BOUNDS';
    s.reason = `leaf element table (${count} elements) extends past the end of the page (${end - p} bytes)`;
    return false;
  }
  let run = dataStart;
  let contiguous = true;
  let pk = 0;
  let pkl = 0;
  for (let i = 0; i < count; i++) {
    const e = elems + i * ELEMENT_SIZE;
    const flags = u32(b, e);
    const pos = u32(b, e + 4);
    const ks = u32(b, e + 8);
    const vs = u32(b, e + 12);
    const k0 = e + pos;
    const ke = k0 + ks;
    const ve = ke + vs;
    if (ve > end) {
      s.code = 'ELEMENT_BOUNDS';
      s.reason = `leaf element ${i} (pos ${pos}, ksize ${ks}, vsize ${vs}) extends past the end of the page (${end - p} bytes)`;
      return false;
    }
    if (k0 !== run) contiguous = false;
    run = ve;
    if (i > 0) {
      const c = cmpBytes(b, pk, pkl, b, k0, ks);
      if (c >= 0) {
        s.code = 'KEY_ORDER';
        s.reason =
          `key order violated in leaf: key[${i}]=${hexKey(b.subarray(k0, ke))} is ${c === 0 ? '=' : '<'} ` +
          `key[${i - 1}]=${hexKey(b.subarray(pk, pk + pkl))}`;
        return false;
      }
    } else {
      s.firstOff = k0;
      s.firstLen = ks;
    }
    pk = k0;
    pkl = ks;
    if (flags & LEAF_FLAG_BUCKET) {
      s.hasBucket = true;
      contiguous = false;
      if (vs < BUCKET_HEADER_SIZE) {
        s.code = 'ELEMENT_BOUNDS';
        s.reason = `leaf element ${i} is a bucket but its value (${vs} bytes) is shorter than a bucket header`;
        return false;
      }
    } else if (ks === 14 && keyIs(b, k0, SV_KEY)) {
      s.svOff = ke;
      s.svLen = vs;
    } else if (ks === 18 && keyIs(b, k0, FCR_KEY)) {
      s.fcrOff = ke;
      s.fcrLen = vs;
    } else if (ks === 19 && keyIs(b, k0, SCR_KEY)) {
      s.scrOff = ke;
      s.scrLen = vs;
    }
  }
  s.lastOff = pk;
  s.lastLen = pkl;
  if (count === 0) return true;
  if (contiguous) {
    s.crc = crc32c(b.subarray(dataStart, run));
    s.len = run - dataStart;
    return true;
  }
  let crc = 0;
  let len = 0;
  for (let i = 0; i < count; i++) {
    const e = elems + i * ELEMENT_SIZE;
    const k0 = e + u32(b, e + 4);
    const ks = u32(b, e + 8);
    const vs = u32(b, e + 12);
    if (u32(b, e) & LEAF_FLAG_BUCKET) {
      crc = crc32c(b.subarray(k0, k0 + ks), crc);
      len += ks;
    } else {
      crc = crc32c(b.subarray(k0, k0 + ks + vs), crc);
      len += ks + vs;
    }
  }
  s.crc = crc;
  s.len = len;
  return true;
}

/** A bucket element found in a leaf. */
interface BucketRef {
  index: number;
  name: Buffer;
  root: number;
  inline: InlineBucket | null;
}

interface InlineBucket {
  count: number;
  crc: number;
  len: number;
  last: Buffer | null;
  sv: Buffer | undefined;
  /** meta/finishedCompactRev when this is the meta bucket. */
  fcr: number | undefined;
  /** meta/scheduledCompactRev when this is the meta bucket. */
  scr: number | undefined;
  nested: BucketRef[];
  /** Copy of the inline page when its keys look like revisions (a `key` bucket), analysed at walk time. */
  page: Buffer | undefined;
}

/** Values of interest found in a (meta bucket) leaf page. */
interface MetaVals {
  sv?: Buffer;
  fcr?: number;
  scr?: number;
}

interface ParseError {
  code: DefectCode;
  reason: string;
}

/** Collects the bucket elements of an (already scanned) leaf; parses inline buckets on the spot. */
function collectBuckets(b: Uint8Array, p: number, count: number, depth: number): BucketRef[] | ParseError {
  const refs: BucketRef[] = [];
  for (let i = 0; i < count; i++) {
    const e = p + PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
    if (!(u32(b, e) & LEAF_FLAG_BUCKET)) continue;
    const k0 = e + u32(b, e + 4);
    const ke = k0 + u32(b, e + 8);
    const ve = ke + u32(b, e + 12);
    const name = Buffer.from(b.subarray(k0, ke));
    const root = u64(b, ke);
    let inline: InlineBucket | null = null;
    if (root === 0) {
      const r = parseInline(b, ke + BUCKET_HEADER_SIZE, ve, depth + 1);
      if ('code' in r) return { code: r.code, reason: `inline bucket ${JSON.stringify(bytesToString(name))} (element ${i}): ${r.reason}` };
      inline = r;
    }
    refs.push({ index: i, name, root, inline });
  }
  return refs;
}

function parseInline(b: Uint8Array, p: number, end: number, depth: number): InlineBucket | ParseError {
  if (depth > 8) return { code: 'PAGE_TYPE', reason: 'inline buckets nested too deeply' };
  if (p + PAGE_HEADER_SIZE > end) return { code: 'ELEMENT_BOUNDS', reason: 'bucket value too short for its inline page header' };
  const flags = u16(b, p + 8);
  const count = u16(b, p + 10);
  if (!(flags & FLAG_LEAF)) return { code: 'PAGE_TYPE', reason: `inline page is a ${pageTypeName(flags)} page, expected leaf` };
  const s = newScan();
  if (!scanLeaf(b, p, end, count, s)) return { code: s.code!, reason: s.reason };
  let nested: BucketRef[] = [];
  if (s.hasBucket) {
    const r = collectBuckets(b, p, count, depth);
    if (!Array.isArray(r)) return r;
    nested = r;
  }
  return {
    count,
    crc: s.crc,
    len: s.len,
    last: count > 0 ? Buffer.from(b.subarray(s.lastOff, s.lastOff + s.lastLen)) : null,
    sv: s.svOff >= 0 ? Buffer.from(b.subarray(s.svOff, s.svOff + s.svLen)) : undefined,
    fcr: s.fcrOff >= 0 ? compactRevOf(b, s.fcrOff, s.fcrLen) : undefined,
    scr: s.scrOff >= 0 ? compactRevOf(b, s.scrOff, s.scrLen) : undefined,
    nested,
    page: count > 0 && looksLikeRevision(b, s.firstOff, s.firstLen) ? Buffer.from(b.subarray(p, end)) : undefined,
  };
}

function looksLikeRevision(b: Uint8Array, k0: number, ks: number): boolean {
  return (ks === 17 || ks === 18) && b[k0 + 8] === 0x5f;
}

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

/** Per-page summaries, indexed by page id; grown as pages stream by. */
class PageTable {
  size = 0;
  kind = new Uint8Array(0);
  flags = new Uint16Array(0);
  count = new Uint16Array(0);
  overflow = new Uint32Array(0);
  /** Leaf: CRC of its k/v bytes. ID mismatch: low 32 bits of the header id. */
  crc = new Uint32Array(0);
  /** Leaf: byte length of its k/v bytes (≤ MAX_SPAN). */
  dlen = new Uint32Array(0);
  /** Leaf: arena offset of first‖last key. Branch: index of its first element in the branch table. */
  off = new Uint32Array(0);
  /** Leaf: first key len byte | last key len byte << 8 (bit 7 of each: truncated). */
  klen = new Uint16Array(0);
  /** Leaf as a `key` bucket page: KV_* state. */
  kvState = new Uint8Array(0);
  /** KV_PENDING: Σ s of its records. KV_RESOLVED: its live-key contribution. */
  kvC = new Int32Array(0);
  /** KV_PENDING: offset of its record detail in the revision arena. */
  kvOff = new Uint32Array(0);

  ensure(pgid: number): void {
    if (pgid < this.size) return;
    this.size = pgid + 1;
    if (pgid < this.kind.length) return;
    let cap = Math.max(1024, this.kind.length * 2);
    while (cap <= pgid) cap *= 2;
    this.reserve(cap);
  }

  /** Capacity for `cap` pages (the high-water mark is known early: no doubling slack). */
  reserve(cap: number): void {
    if (cap <= this.kind.length) return;
    const grow = <T extends Uint8Array | Uint16Array | Uint32Array | Int32Array>(a: T, make: (n: number) => T): T => {
      const n = make(cap);
      n.set(a as never);
      return n;
    };
    this.kind = grow(this.kind, (n) => new Uint8Array(n));
    this.flags = grow(this.flags, (n) => new Uint16Array(n));
    this.count = grow(this.count, (n) => new Uint16Array(n));
    this.overflow = grow(this.overflow, (n) => new Uint32Array(n));
    this.crc = grow(this.crc, (n) => new Uint32Array(n));
    this.dlen = grow(this.dlen, (n) => new Uint32Array(n));
    this.off = grow(this.off, (n) => new Uint32Array(n));
    this.klen = grow(this.klen, (n) => new Uint16Array(n));
    this.kvState = grow(this.kvState, (n) => new Uint8Array(n));
    this.kvC = grow(this.kvC, (n) => new Int32Array(n));
    this.kvOff = grow(this.kvOff, (n) => new Uint32Array(n));
  }
}

/** Branch elements of all branch pages: child pgid and (truncated) key. */
class BranchTable {
  n = 0;
  /** Child pgid; ids ≥ 2^32 are stored as 0xFFFFFFFF (beyond any high-water mark we can hold). */
  child = new Uint32Array(1024);
  koff = new Uint32Array(1024);
  klen = new Uint8Array(1024);
  push(child: number, koff: number, klen: number): void {
    if (this.n === this.child.length) {
      const cap = this.n * 2;
      const c = new Uint32Array(cap);
      c.set(this.child);
      this.child = c;
      const o = new Uint32Array(cap);
      o.set(this.koff);
      this.koff = o;
      const l = new Uint8Array(cap);
      l.set(this.klen);
      this.klen = l;
    }
    this.child[this.n] = child > 0xffffffff ? 0xffffffff : child;
    this.koff[this.n] = koff;
    this.klen[this.n] = klen;
    this.n++;
  }
}

interface Span {
  pgid: number;
  start: number;
  end: number;
}

interface WalkCtx {
  mode: 'root' | 'top' | 'nested';
  count: number;
  last: Key | null;
  isMeta: boolean;
  /** The `key` bucket: count live keys. */
  isKey: boolean;
  sv: Uint8Array | undefined;
  /** Some page of this tree could not be read. */
  broken?: boolean;
}

/** What a non-bbolt file looks like, from its first bytes. */
function formatHint(h: Uint8Array): string {
  const starts = (...sig: number[]): boolean => sig.every((x, i) => h[i] === x);
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'this looks zstd-compressed; decompress it first';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'this looks xz-compressed; decompress it first';
  if (starts(0x42, 0x5a, 0x68)) return 'this looks bzip2-compressed; decompress it first';
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'this looks like a zip archive; extract the snapshot first';
  if (h.length >= 262 && h[257] === 0x75 && h[258] === 0x73 && h[259] === 0x74 && h[260] === 0x61 && h[261] === 0x72) {
    return 'this looks like a tar archive; extract the snapshot first';
  }
  return 'this is not an etcd snapshot';
}

function toBuffer(c: Uint8Array): Buffer {
  return Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

// ------------------------------------------------------------- the verifier ---

// Module-internal access for verifySnapshotFile's zero-copy reads into the hash ring.
let ringSlot!: (v: SnapshotVerifier, max: number) => Buffer | null;
let ringCommit!: (v: SnapshotVerifier, view: Buffer) => void;
let ringAbort!: (v: SnapshotVerifier) => void;

/** Incremental verifier: feed chunks of any size in file order, then finish(). */
export class SnapshotVerifier {
  private readonly requireTrailer: boolean;
  private total = 0;
  /** sha256 of the input, the last 32 bytes held back. */
  private readonly sink: ShaSink;
  private done: SnapshotReport | undefined;

  private phase: 'head' | 'pages' | 'skip' = 'head';
  /** Why we stopped looking at pages ('skip'): the format is not bbolt. */
  private notBbolt = false;
  private head: ByteBuf | null = new ByteBuf(8192);
  private headNeed = 2;
  private probe = 0;
  private meta0: MetaInfo | undefined;
  private sawMagic = false;
  /** Why the first meta page 1 candidate with the right magic was rejected. */
  private meta1Invalid: string | undefined;

  private ps = 0;
  private readonly metas: (MetaInfo | undefined)[] = [undefined, undefined];
  private active: MetaInfo | undefined;
  private hwm = 0;
  private limitSlots = Infinity;
  private freelistPgid = -1;

  // stream assembly
  private fed = 0;
  private nextSlot = 0;
  private acc: ByteBuf | null = null;
  private accStart = 0;
  private waiting: Span[] = [];

  // per-page summaries
  private readonly table = new PageTable();
  private readonly branches = new BranchTable();
  private readonly arena = new ByteBuf(1 << 16);
  private readonly errors = new Map<number, ParseError>();
  private readonly details = new Map<number, BucketRef[]>();
  private readonly metaVals = new Map<number, MetaVals>();
  private readonly kvErrors = new Map<number, string>();
  /** Per-record detail of `key` bucket pages parsed before the compacted revision is known. */
  private revArena = new ByteBuf(1 << 12);
  private readonly kvScratch: KvResult = { error: null, sum: 0, contrib: 0, markers: 0 };
  /** meta/finishedCompactRev of the live tree; -1 until known. */
  private compactRev = -1;
  private freeIds: Float64Array | null = null;
  private readonly scan = newScan();

  // results
  private readonly defects: SnapshotDefect[] = [];
  private omitted = 0;
  private fatal = false;
  private h = 0;
  private liveKeys = 0;
  private bumpMarkers = 0;
  private compactionPending = false;
  private userKeys = 0;
  private revision = 0;
  private totalKeys = 0;
  private version: string | undefined;
  private readonly buckets: Record<string, number> = {};

  constructor(opts: VerifyOptions = {}) {
    this.requireTrailer = opts.requireTrailer ?? false;
    let sink: ShaSink | undefined;
    if (opts.parallelHash) {
      try {
        sink = new WorkerSha();
      } catch {
        sink = undefined; // no worker threads here: hash inline
      }
    }
    this.sink = sink ?? new InlineSha();
  }

  static {
    ringSlot = (v, max) => (v.done ? null : v.sink.slot(max));
    ringCommit = (v, view) => {
      v.sink.commit(view.length);
      v.consume(view);
    };
    ringAbort = (v) => v.sink.abort();
  }

  update(chunk: Uint8Array): void {
    if (this.done) throw new Error('SnapshotVerifier.update() called after finish()');
    if (chunk.length === 0) return;
    const b = toBuffer(chunk);
    this.sink.push(b);
    this.consume(b);
  }

  private consume(b: Buffer): void {
    const n = b.length;
    if (n === 0) return;
    this.total += n;
    if (this.phase === 'pages') this.feed(b);
    else if (this.phase === 'head') {
      const head = this.head!;
      head.append(b, 0, n);
      if (head.len >= this.headNeed) this.resolveHead(false);
    }
  }

  finish(): SnapshotReport {
    if (this.done) return this.done;
    // The structure is checked first, while a hash worker may still be busy.
    let hasTrailer = false;
    let failure: unknown;
    try {
      hasTrailer = this.finishStructure();
    } catch (err) {
      failure = err;
    }
    const sha = this.sink.finish();
    if (failure !== undefined) {
      // Defensive: never throw for bad input.
      this.addDefect('NOT_BBOLT', undefined, `internal error while verifying: ${(failure as Error).message}`, true);
      return (this.done = this.buildReport(false, sha.all.toString('hex'), undefined));
    }
    return (this.done = this.finishTrailer(sha, hasTrailer));
  }

  // ----------------------------------------------------------------- head ---

  /** Decides the format and page size from the first bytes. */
  private resolveHead(eof: boolean): void {
    const head = this.head!;
    const h = head.buf.subarray(0, head.len);
    const n = h.length;
    if (n >= 2 && h[0] === GZIP_MAGIC0 && h[1] === GZIP_MAGIC1) {
      this.addDefect('GZIP', undefined, 'this is gzip-compressed; gunzip it first (etcd snapshots are raw bbolt databases)', true);
      this.stop(true);
      return;
    }
    if (!this.meta0) {
      if (n < META_BODY_OFFSET + META_SIZE && !eof) {
        this.headNeed = META_BODY_OFFSET + META_SIZE;
        return;
      }
      this.meta0 = parseMeta(h, 0, 0);
      if (this.meta0.magic === MAGIC) this.sawMagic = true;
    }
    const m0 = this.meta0;
    if (!m0.invalid) {
      this.startPages(m0.pageSize);
      return;
    }
    // Like bbolt's getPageSizeFromSecondMeta: probe 1 KiB << i for a valid meta.
    for (; this.probe < META1_PROBE_OFFSETS.length; this.probe++) {
      const pos = META1_PROBE_OFFSETS[this.probe]!;
      if (pos + META_BODY_OFFSET + META_SIZE > n) {
        if (!eof && n < HEAD_LIMIT) {
          this.headNeed = pos + META_BODY_OFFSET + META_SIZE;
          return;
        }
        break;
      }
      const m = parseMeta(h, pos, 1);
      if (m.magic === MAGIC) {
        this.sawMagic = true;
        this.meta1Invalid ??= `${m.invalid} (at offset ${pos})`;
      }
      if (!m.invalid) {
        this.startPages(m.pageSize);
        return;
      }
    }
    if (!this.sawMagic) {
      const what = n < META_BODY_OFFSET + 4 ? `only ${n} bytes` : `bad magic 0x${m0.magic.toString(16).padStart(8, '0')} at offset 16`;
      this.addDefect('NOT_BBOLT', undefined, `not a bbolt database (${what}; expected 0x${MAGIC.toString(16)}): ${formatHint(h)}`, true);
    } else if (eof && n < META_BODY_OFFSET + META_SIZE) {
      this.addDefect('TRUNCATED', 0, `file truncated: only ${n} bytes, the meta page is incomplete`, true);
    } else {
      const m1 = this.meta1Invalid ?? 'not found';
      this.addDefect('META_INVALID', undefined, `both meta pages are invalid (meta page 0: ${m0.invalid}; meta page 1: ${m1}): bbolt cannot open this file`, true);
    }
    this.stop(true);
  }

  private stop(notBbolt: boolean): void {
    this.phase = 'skip';
    this.notBbolt = notBbolt;
    this.head = null;
    this.acc = null;
    this.waiting = [];
    this.limitSlots = 0;
  }

  private startPages(pageSize: number): void {
    this.ps = pageSize;
    this.phase = 'pages';
    const head = this.head!;
    this.head = null;
    this.feed(head.buf.subarray(0, head.len));
  }

  // ---------------------------------------------------------- page stream ---

  /** Feeds bytes (file offset this.fed) to the page slot processor. */
  private feed(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n && this.phase === 'pages') {
      const acc = this.acc;
      if (acc && acc.len > 0) {
        const need = this.accNeedEnd();
        let take = need - this.fed;
        if (take <= 0) {
          acc.len = 0;
          continue;
        }
        if (take > n - i) take = n - i;
        acc.append(chunk, i, take);
        i += take;
        this.fed += take;
        this.processRegion(acc.buf, 0, acc.len, this.accStart);
        this.trimAcc();
      } else {
        const base = this.fed;
        this.fed += n - i;
        this.processRegion(chunk, i, n, base);
        const keep = this.retainFrom();
        if (keep < this.fed) {
          const from = i + (keep - base);
          if (!this.acc) this.acc = new ByteBuf(Math.max(this.ps * 2, 8192));
          this.acc.len = 0;
          this.accStart = keep;
          this.acc.append(chunk, from, n - from);
        }
        i = n;
      }
    }
  }

  /** File offset up to which the retained bytes are needed. */
  private accNeedEnd(): number {
    let need = this.nextSlot < this.limitSlots ? (this.nextSlot + 1) * this.ps : 0;
    for (const w of this.waiting) if (w.end > need) need = w.end;
    return need;
  }

  /** First file offset still needed (Infinity when none). */
  private retainFrom(): number {
    let r = this.nextSlot < this.limitSlots && this.nextSlot * this.ps < this.fed ? this.nextSlot * this.ps : Infinity;
    for (const w of this.waiting) if (w.start < r) r = w.start;
    return r;
  }

  private trimAcc(): void {
    const acc = this.acc;
    if (!acc) return;
    const keep = this.retainFrom();
    if (keep >= this.fed) {
      acc.len = 0;
      return;
    }
    const drop = keep - this.accStart;
    if (drop > 0) {
      acc.buf.copyWithin(0, drop, acc.len);
      acc.len -= drop;
      this.accStart = keep;
    }
  }

  /** Processes the complete slots and spans in b[start..end) = file [base, …). */
  private processRegion(b: Buffer, start: number, end: number, base: number): void {
    const ps = this.ps;
    const fileEnd = base + (end - start);
    while (this.nextSlot < this.limitSlots) {
      const s = this.nextSlot * ps;
      if (s + ps > fileEnd) break;
      this.handleSlot(b, start + (s - base), end, this.nextSlot);
      this.nextSlot++;
    }
    if (this.waiting.length > 0) {
      const w = this.waiting;
      for (let j = 0; j < w.length; ) {
        const sp = w[j]!;
        if (sp.end <= fileEnd) {
          w.splice(j, 1);
          this.parsePage(b, start + (sp.start - base), start + (sp.end - base), sp.pgid);
        } else j++;
      }
    }
  }

  private handleSlot(b: Buffer, off: number, regionEnd: number, pgid: number): void {
    if (pgid < 2) {
      this.metas[pgid] = parseMeta(b, off, pgid);
      if (pgid === 1) this.chooseMeta();
      return;
    }
    const t = this.table;
    t.ensure(pgid);
    const idLo = u32(b, off);
    const idHi = u32(b, off + 4);
    if (idHi !== 0 || idLo !== pgid) {
      t.kind[pgid] = K_ID_MISMATCH;
      t.crc[pgid] = idHi !== 0 ? 0xffffffff : idLo;
      return;
    }
    const flags = u16(b, off + 8);
    const overflow = u32(b, off + 12);
    t.flags[pgid] = flags;
    t.count[pgid] = u16(b, off + 10);
    t.overflow[pgid] = overflow;
    const isTree = (flags & (FLAG_BRANCH | FLAG_LEAF)) !== 0;
    if (!isTree && !(flags & FLAG_FREELIST && pgid === this.freelistPgid)) {
      t.kind[pgid] = flags & FLAG_FREELIST ? K_FREELIST : K_OTHER;
      return;
    }
    if (overflow === 0) {
      this.parsePage(b, off, off + this.ps, pgid);
      return;
    }
    if (pgid + overflow >= this.limitSlots) {
      this.setError(pgid, 'PAGE_OUT_OF_BOUNDS', `page with ${overflow} overflow page(s) extends past the high-water mark ${this.hwm}`);
      return;
    }
    const span = (overflow + 1) * this.ps;
    if (span > MAX_SPAN) {
      this.setError(pgid, 'ELEMENT_BOUNDS', `page spans ${span} bytes (${overflow} overflow pages), more than the verifier's ${MAX_SPAN}-byte limit`);
      return;
    }
    if (off + span <= regionEnd) {
      this.parsePage(b, off, off + span, pgid);
      return;
    }
    t.kind[pgid] = K_PENDING;
    this.waiting.push({ pgid, start: pgid * this.ps, end: pgid * this.ps + span });
  }

  private chooseMeta(): void {
    const m0 = this.metas[0]!;
    const m1 = this.metas[1]!;
    if (m0.invalid && m1.invalid) {
      this.addDefect('META_INVALID', undefined, `both meta pages are invalid (meta page 0: ${m0.invalid}; meta page 1: ${m1.invalid}): bbolt cannot open this file`, true);
      this.stop(false);
      return;
    }
    let active: MetaInfo;
    if (m0.invalid) {
      active = m1;
      this.addDefect('META_INVALID', 0, `meta page 0 is invalid: ${m0.invalid}; bbolt falls back to meta page 1 (txid ${m1.txid})`, false);
    } else if (m1.invalid) {
      active = m0;
      this.addDefect('META_INVALID', 1, `meta page 1 is invalid: ${m1.invalid}; bbolt uses meta page 0 (txid ${m0.txid})`, false);
    } else {
      active = m1.txid > m0.txid ? m1 : m0;
    }
    this.active = active;
    this.hwm = active.hwm;
    this.table.reserve(Math.min(active.hwm, 1 << 22));
    this.limitSlots = active.hwm;
    this.freelistPgid = active.noFreelist ? -1 : active.freelist;
  }

  private setError(pgid: number, code: DefectCode, reason: string): void {
    this.table.kind[pgid] = K_ERROR;
    this.errors.set(pgid, { code, reason });
  }

  private parsePage(b: Buffer, p: number, end: number, pgid: number): void {
    const flags = this.table.flags[pgid]!;
    if (flags & FLAG_BRANCH) this.parseBranch(b, p, end, pgid);
    else if (flags & FLAG_LEAF) this.parseLeaf(b, p, end, pgid);
    else this.parseFreelist(b, p, end, pgid);
  }

  private parseLeaf(b: Buffer, p: number, end: number, pgid: number): void {
    const t = this.table;
    const count = t.count[pgid]!;
    const s = this.scan;
    if (!scanLeaf(b, p, end, count, s)) {
      this.setError(pgid, s.code!, s.reason);
      return;
    }
    if (s.hasBucket) {
      const refs = collectBuckets(b, p, count, 0);
      if (!Array.isArray(refs)) {
        this.setError(pgid, refs.code, refs.reason);
        return;
      }
      this.details.set(pgid, refs);
    }
    t.kind[pgid] = K_LEAF;
    t.crc[pgid] = s.crc;
    t.dlen[pgid] = s.len;
    const a = this.arena;
    t.off[pgid] = a.len;
    if (count > 0) {
      const fl = s.firstLen > MAX_KEY ? MAX_KEY : s.firstLen;
      const ll = s.lastLen > MAX_KEY ? MAX_KEY : s.lastLen;
      a.append(b, s.firstOff, fl);
      a.append(b, s.lastOff, ll);
      t.klen[pgid] = lenByte(s.firstLen) | (lenByte(s.lastLen) << 8);
    }
    if (s.svOff >= 0 || s.fcrOff >= 0 || s.scrOff >= 0) {
      const mv: MetaVals = {};
      if (s.svOff >= 0) mv.sv = Buffer.from(b.subarray(s.svOff, s.svOff + s.svLen));
      if (s.fcrOff >= 0) mv.fcr = compactRevOf(b, s.fcrOff, s.fcrLen);
      if (s.scrOff >= 0) mv.scr = compactRevOf(b, s.scrOff, s.scrLen);
      this.metaVals.set(pgid, mv);
    }
    if (count > 0 && looksLikeRevision(b, s.firstOff, s.firstLen)) {
      const r = this.kvScratch;
      const ra = this.revArena;
      const start = ra.len;
      if (analyseKv(b, p, count, this.compactRev, ra, r)) {
        this.bumpMarkers += r.markers;
        if (this.compactRev >= 0) {
          t.kvState[pgid] = KV_RESOLVED;
          t.kvC[pgid] = r.contrib;
        } else {
          t.kvState[pgid] = KV_PENDING;
          t.kvC[pgid] = r.sum;
          t.kvOff[pgid] = start;
        }
      } else {
        ra.len = start;
        t.kvState[pgid] = KV_ERROR;
        this.kvErrors.set(pgid, r.error!);
      }
    }
    // The live root page: its inline meta bucket gives the compacted revision,
    // so the detail kept for `key` pages can be folded into counts right away.
    if (this.compactRev < 0 && pgid === this.active?.root) {
      const meta = this.details.get(pgid)?.find((r) => r.name.equals(META_NAME));
      if (meta?.inline) this.setCompactRev(meta.inline.fcr ?? 0);
    }
  }

  /** Fixes the compacted revision and resolves the `key` pages kept pending. */
  private setCompactRev(c: number): void {
    this.compactRev = c;
    const t = this.table;
    for (let pgid = 2; pgid < t.size; pgid++) {
      if (t.kvState[pgid] === KV_PENDING) {
        t.kvC[pgid] = this.resolveKv(pgid, c);
        t.kvState[pgid] = KV_RESOLVED;
      }
    }
    this.revArena = new ByteBuf(64);
  }

  private resolveKv(pgid: number, c: number): number {
    const t = this.table;
    const buf = this.revArena.buf;
    const n = t.count[pgid]!;
    let i = t.kvOff[pgid]!;
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
    return t.kvC[pgid]! + add;
  }

  private parseBranch(b: Buffer, p: number, end: number, pgid: number): void {
    const t = this.table;
    const count = t.count[pgid]!;
    const elems = p + PAGE_HEADER_SIZE;
    if (elems + count * ELEMENT_SIZE > end) {
      this.setError(pgid, 'ELEMENT_BOUNDS', `branch element table (${count} elements) extends past the end of the page (${end - p} bytes)`);
      return;
    }
    const br = this.branches;
    const a = this.arena;
    const bStart = br.n;
    const aStart = a.len;
    let pk = 0;
    let pkl = 0;
    for (let i = 0; i < count; i++) {
      const e = elems + i * ELEMENT_SIZE;
      const pos = u32(b, e);
      const ks = u32(b, e + 4);
      const k0 = e + pos;
      if (k0 + ks > end) {
        br.n = bStart;
        a.len = aStart;
        this.setError(pgid, 'ELEMENT_BOUNDS', `branch element ${i} (pos ${pos}, ksize ${ks}) extends past the end of the page (${end - p} bytes)`);
        return;
      }
      if (i > 0) {
        const c = cmpBytes(b, pk, pkl, b, k0, ks);
        if (c >= 0) {
          br.n = bStart;
          a.len = aStart;
          this.setError(
            pgid,
            'KEY_ORDER',
            `key order violated in branch: key[${i}]=${hexKey(b.subarray(k0, k0 + ks))} is ${c === 0 ? '=' : '<'} key[${i - 1}]=${hexKey(b.subarray(pk, pk + pkl))}`,
          );
          return;
        }
      }
      pk = k0;
      pkl = ks;
      const koff = a.len;
      a.append(b, k0, ks > MAX_KEY ? MAX_KEY : ks);
      br.push(u64(b, e + 8), koff, lenByte(ks));
    }
    t.kind[pgid] = K_BRANCH;
    t.off[pgid] = bStart;
  }

  private parseFreelist(b: Buffer, p: number, end: number, pgid: number): void {
    let cnt = this.table.count[pgid]!;
    let idx = p + PAGE_HEADER_SIZE;
    if (cnt === FREELIST_COUNT_OVERFLOW) {
      if (idx + 8 > end) {
        this.setError(pgid, 'ELEMENT_BOUNDS', 'freelist count extends past the end of the page');
        return;
      }
      cnt = u64(b, idx);
      idx += 8;
    }
    if (idx + cnt * 8 > end) {
      this.setError(pgid, 'ELEMENT_BOUNDS', `freelist of ${cnt} page ids extends past the end of the page (${end - p} bytes)`);
      return;
    }
    const ids = new Float64Array(cnt);
    for (let j = 0; j < cnt; j++) ids[j] = u64(b, idx + j * 8);
    this.freeIds = ids;
    this.table.kind[pgid] = K_FREELIST;
  }

  // --------------------------------------------------------------- finish ---

  /** Everything but the sha256: format, truncation, the tree walk. Returns whether the input ends with a trailer. */
  private finishStructure(): boolean {
    const total = this.total;
    if (total === 0) {
      this.addDefect('EMPTY', undefined, 'the file is empty (0 bytes): not a snapshot', true);
      return false;
    }
    if (this.phase === 'head') this.resolveHead(true);
    if (this.notBbolt) return false;
    // etcd's rule (snapshot.hasChecksum): size % 512 == 32 means a sha256 trailer.
    const hasTrailer = total > TRAILER_SIZE && total % TRAILER_ALIGN === TRAILER_SIZE;
    const contentLen = hasTrailer ? total - TRAILER_SIZE : total;
    if (this.phase === 'pages') {
      const ps = this.ps;
      if (!this.active) {
        this.addDefect('TRUNCATED', 1, `file truncated: ${contentLen} bytes, shorter than the two meta pages (${2 * ps} bytes)`, true);
      } else {
        const need = this.hwm * ps;
        if (contentLen < need) {
          this.addDefect(
            'TRUNCATED',
            Math.floor(contentLen / ps),
            `file truncated: the meta page says ${this.hwm} pages × ${ps} = ${need} bytes but only ${contentLen} bytes of page data are present ` +
              `(${need - contentLen} bytes missing)`,
            true,
          );
        }
        this.walk();
      }
    }
    return hasTrailer;
  }

  private finishTrailer(sha: ShaResult, hasTrailer: boolean): SnapshotReport {
    const total = this.total;
    const shaAll = sha.all.toString('hex');
    if (total === 0 || this.notBbolt) return this.buildReport(false, shaAll, undefined);
    if (!hasTrailer) {
      this.addDefect(
        'TRAILER_MISSING',
        undefined,
        `no sha256 trailer (size ${total} % 512 = ${total % TRAILER_ALIGN}, not 32): a raw database copy, its integrity cannot be checked end to end`,
        this.requireTrailer,
      );
      return this.buildReport(false, shaAll, undefined);
    }
    const shaContent = sha.content.toString('hex');
    const trailerHex = sha.tail.toString('hex');
    if (trailerHex !== shaContent) {
      this.addDefect(
        'TRAILER_MISMATCH',
        undefined,
        `sha256 trailer mismatch: the last 32 bytes say ${trailerHex} but the ${total - TRAILER_SIZE} bytes before them hash to ${shaContent}: ` +
          'the snapshot is corrupted',
        true,
      );
    }
    return this.buildReport(true, shaContent, trailerHex);
  }

  private buildReport(hasTrailer: boolean, sha256: string, trailerHex: string | undefined): SnapshotReport {
    const ok = !this.fatal;
    const r: SnapshotReport = {
      ok,
      fileSize: this.total,
      hasTrailer,
      sha256,
      hash: this.h >>> 0,
      revision: this.revision,
      totalKeys: this.totalKeys,
      userKeys: this.userKeys,
      bumpMarkers: this.bumpMarkers,
      compactionPending: this.compactionPending,
      totalSize: this.active ? this.hwm * this.ps : 0,
      pageSize: this.ps,
      txid: this.active?.txid ?? 0,
      pages: this.active ? this.hwm : 0,
      buckets: this.buckets,
      defects: this.defects,
    };
    if (trailerHex !== undefined) r.trailerSha256 = trailerHex;
    if (this.version !== undefined) r.version = this.version;
    if (this.omitted > 0) r.omittedDefects = this.omitted;
    return r;
  }

  private addDefect(code: DefectCode, page: number | undefined, reason: string, fatal: boolean): void {
    if (fatal) this.fatal = true;
    if (this.defects.length >= MAX_DEFECTS) {
      this.omitted++;
      return;
    }
    const d: SnapshotDefect = { code, reason, fatal };
    if (page !== undefined) d.page = page;
    this.defects.push(d);
  }

  // ----------------------------------------------------------------- walk ---

  private mark = new Uint8Array(0);
  private size = 0;

  private walk(): void {
    const t = this.table;
    const hwm = this.hwm;
    const size = Math.max(2, Math.min(hwm, t.size));
    this.size = size;
    const mark = (this.mark = new Uint8Array(size));
    mark[0] = 1;
    mark[1] = 1;

    // Freelist.
    const fp = this.freelistPgid;
    let freelistOk = fp < 0;
    if (fp >= 0) {
      if (fp >= hwm) {
        this.addDefect('PAGE_OUT_OF_BOUNDS', fp, `the freelist page is beyond the high-water mark ${hwm}`, true);
      } else if (fp < 2) {
        this.addDefect('PAGE_TYPE', fp, `the freelist page id points at a meta page`, true);
      } else if (fp >= t.size || t.kind[fp] === K_NONE || t.kind[fp] === K_PENDING) {
        this.addDefect('TRUNCATED', fp, `the freelist page is missing: the file ends before it`, true);
      } else if (t.kind[fp] === K_ID_MISMATCH) {
        this.addDefect('PAGE_ID_MISMATCH', fp, `the freelist page's header carries page id ${t.crc[fp]}`, true);
      } else if (t.kind[fp] === K_ERROR) {
        const e = this.errors.get(fp)!;
        this.addDefect(e.code, fp, `freelist page: ${e.reason}`, true);
      } else if (t.kind[fp] !== K_FREELIST) {
        this.addDefect('PAGE_TYPE', fp, `the meta page's freelist page is a ${pageTypeName(t.flags[fp]!)} page`, true);
      } else {
        const ids = this.freeIds!;
        let dups = 0;
        for (let j = 0; j < ids.length; j++) {
          const id = ids[j]!;
          if (id >= size) continue;
          if (mark[id]! & 2) {
            if (dups++ < 10) this.addDefect('PAGE_DOUBLE_REF', id, 'already freed (listed twice in the freelist)', true);
          }
          mark[id]! |= 2;
        }
        const ov = t.overflow[fp]!;
        for (let id = fp; id <= fp + ov && id < size; id++) mark[id]! |= 1;
        freelistOk = true;
      }
    }

    // The compacted revision, needed to count live keys (unless the root page already gave it).
    if (this.compactRev < 0) this.setCompactRev(this.findCompactRev());
    // A compaction scheduled past the finished one was still running (or, after
    // `--mark-compacted`, not yet run): old records are still in the bucket.
    this.compactionPending = this.findCompactRev('scr') > this.compactRev;

    // The tree, from the root bucket.
    const root = this.active!.root;
    const rootCtx: WalkCtx = { mode: 'root', count: 0, last: null, isMeta: false, isKey: false, sv: undefined };
    this.walkPage(root, null, null, 0, rootCtx, -1);

    // Every revision bump (etcdutl restore --bump-revision) adds a record for the empty key "":
    // etcdutl's set counts that key once; etcd never serves it. Markers are left out of the
    // generation count (analyseKv) and added back here.
    this.totalKeys = this.liveKeys + (this.bumpMarkers > 0 ? 1 : 0);
    this.userKeys = this.liveKeys;
    for (const name of ['key', 'meta']) {
      if (!(name in this.buckets) && !rootCtx.broken) {
        this.addDefect('BUCKET_MISSING', undefined, `bucket "${name}" is missing: this is not an etcd snapshot (etcd always creates it)`, true);
      }
    }

    // Every page below the high-water mark is meta, reachable or free. (Without a
    // persisted freelist bbolt derives it as "all unreachable pages": nothing to check.)
    if (fp >= 0 && freelistOk) {
      const limit = Math.min(hwm, t.size);
      let runStart = -1;
      for (let id = 2; id <= limit; id++) {
        const unreachable = id < limit && (mark[id]! & 3) === 0;
        if (unreachable && runStart < 0) runStart = id;
        else if (!unreachable && runStart >= 0) {
          const last = id - 1;
          this.addDefect(
            'PAGE_UNREACHABLE',
            runStart,
            last === runStart
              ? 'unreachable and not in the freelist (leaked page)'
              : `pages ${runStart}-${last} are unreachable and not in the freelist (${last - runStart + 1} leaked pages)`,
            true,
          );
          runStart = -1;
        }
      }
    }
  }

  private ref(parent: number): string {
    return parent < 0 ? 'the meta page' : `page ${parent}`;
  }

  private leafFirstKey(pgid: number): Key {
    const o = this.table.off[pgid]!;
    const l = this.table.klen[pgid]! & 0xff;
    return { b: this.arena.buf.subarray(o, o + (l & 0x7f)), t: (l & 0x80) !== 0 };
  }

  /**
   * meta/finishedCompactRev of the live tree (0 when absent), looked up before
   * the walk because bucket "key" sorts before "meta". Read-only, cycle-safe.
   */
  private findCompactRev(which: 'fcr' | 'scr' = 'fcr'): number {
    const t = this.table;
    const seen = new Set<number>();
    const usable = (pgid: number, depth: number): boolean =>
      depth <= MAX_DEPTH && pgid >= 2 && pgid < t.size && pgid < this.hwm && !seen.has(pgid) && (seen.add(pgid), true);
    const findMeta = (pgid: number, depth: number): BucketRef | undefined => {
      if (!usable(pgid, depth)) return undefined;
      if (t.kind[pgid] === K_BRANCH) {
        const start = t.off[pgid]!;
        for (let i = 0; i < t.count[pgid]!; i++) {
          const r = findMeta(this.branches.child[start + i]!, depth + 1);
          if (r) return r;
        }
      } else if (t.kind[pgid] === K_LEAF) {
        return this.details.get(pgid)?.find((r) => r.name.equals(META_NAME));
      }
      return undefined;
    };
    const meta = findMeta(this.active!.root, 0);
    if (!meta) return 0;
    if (meta.inline) return meta.inline[which] ?? 0;
    let fcr = 0;
    const visit = (pgid: number, depth: number): void => {
      if (!usable(pgid, depth)) return;
      if (t.kind[pgid] === K_BRANCH) {
        const start = t.off[pgid]!;
        for (let i = 0; i < t.count[pgid]!; i++) visit(this.branches.child[start + i]!, depth + 1);
      } else if (t.kind[pgid] === K_LEAF) {
        const v = this.metaVals.get(pgid)?.[which];
        if (v !== undefined) fcr = v;
      }
    };
    visit(meta.root, 0);
    return fcr;
  }

  private branchKey(i: number): Key {
    const br = this.branches;
    const l = br.klen[i]!;
    const o = br.koff[i]!;
    return { b: this.arena.buf.subarray(o, o + (l & 0x7f)), t: (l & 0x80) !== 0 };
  }

  private walkPage(pgid: number, minK: Key | null, maxK: Key | null, depth: number, ctx: WalkCtx, parent: number): Key | null {
    const t = this.table;
    if (depth > MAX_DEPTH) {
      this.addDefect('PAGE_TYPE', pgid, `tree nested deeper than ${MAX_DEPTH} levels below ${this.ref(parent)}: a reference cycle`, true);
      ctx.broken = true;
      return null;
    }
    if (pgid >= this.hwm) {
      this.addDefect('PAGE_OUT_OF_BOUNDS', pgid, `referenced by ${this.ref(parent)} but beyond the high-water mark ${this.hwm}`, true);
      ctx.broken = true;
      return null;
    }
    if (pgid < 2) {
      this.addDefect('PAGE_DOUBLE_REF', pgid, `a meta page, referenced as a tree page by ${this.ref(parent)}`, true);
      ctx.broken = true;
      return null;
    }
    const kind = pgid < t.size ? t.kind[pgid]! : K_NONE;
    if (kind === K_NONE || kind === K_PENDING) {
      this.addDefect('TRUNCATED', pgid, `missing: the file ends before it (referenced by ${this.ref(parent)})`, true);
      ctx.broken = true;
      return null;
    }
    if (kind === K_ID_MISMATCH) {
      const id = t.crc[pgid]!;
      this.addDefect('PAGE_ID_MISMATCH', pgid, `its header carries page id ${id === 0xffffffff ? '≥2^32' : id} (referenced by ${this.ref(parent)})`, true);
      ctx.broken = true;
      return null;
    }
    // Reachability: every page of the span is referenced once and not free.
    const mark = this.mark;
    const ov = t.overflow[pgid]!;
    const spanEnd = Math.min(pgid + ov, this.size - 1);
    let dup = false;
    for (let id = pgid; id <= spanEnd; id++) {
      const m = mark[id]!;
      if (m & 1) {
        this.addDefect('PAGE_DOUBLE_REF', id, `multiple references (reached again via ${this.ref(parent)})`, true);
        dup = true;
      } else if (m & 2) {
        this.addDefect('PAGE_DOUBLE_REF', id, 'reachable from the tree but also listed in the freelist', true);
      }
      mark[id] = m | 1;
    }
    if (dup) {
      ctx.broken = true;
      return null;
    }

    if (kind === K_ERROR) {
      const e = this.errors.get(pgid)!;
      this.addDefect(e.code, pgid, e.reason, true);
      ctx.broken = true;
      return null;
    }
    if (kind === K_BRANCH) {
      const start = t.off[pgid]!;
      const cnt = t.count[pgid]!;
      const br = this.branches;
      let running = minK;
      let maxSub: Key | null = null;
      let key = cnt > 0 ? this.branchKey(start) : null;
      for (let i = 0; i < cnt; i++) {
        const k = key!;
        if (running) {
          const c = cmpKey(running, k);
          if (i === 0 ? c > 0 : c >= 0) {
            this.addDefect(
              'KEY_ORDER',
              pgid,
              i === 0
                ? `key order violated in branch: first key ${hexKey(k)} is < the separator key ${hexKey(running)} in parent ${this.ref(parent)}`
                : `key order violated in branch: key[${i}]=${hexKey(k)} is not > the largest key ${hexKey(running)} of the preceding subtree`,
              true,
            );
          }
        }
        if (maxK && cmpKey(k, maxK) >= 0) {
          this.addDefect('KEY_ORDER', pgid, `key order violated in branch: key[${i}]=${hexKey(k)} is not < the next separator key ${hexKey(maxK)} in parent ${this.ref(parent)}`, true);
        }
        const next = i + 1 < cnt ? this.branchKey(start + i + 1) : null;
        maxSub = this.walkPage(br.child[start + i]!, k, next ?? maxK, depth + 1, ctx, pgid);
        running = maxSub;
        key = next;
      }
      return maxSub;
    }
    if (kind === K_LEAF) {
      const cnt = t.count[pgid]!;
      let last: Key | null = null;
      if (cnt > 0) {
        const o = t.off[pgid]!;
        const kl = t.klen[pgid]!;
        const fl = kl & 0x7f;
        const ll = (kl >>> 8) & 0x7f;
        const buf = this.arena.buf;
        const first: Key = { b: buf.subarray(o, o + fl), t: (kl & 0x80) !== 0 };
        last = { b: buf.subarray(o + fl, o + fl + ll), t: (kl & 0x8000) !== 0 };
        if (minK && cmpKey(minK, first) > 0) {
          this.addDefect('KEY_ORDER', pgid, `key order violated in leaf: first key ${hexKey(first)} is < the separator key ${hexKey(minK)} in parent ${this.ref(parent)}`, true);
        }
        if (maxK && cmpKey(last, maxK) >= 0) {
          this.addDefect('KEY_ORDER', pgid, `key order violated in leaf: last key ${hexKey(last)} is not < the next separator key ${hexKey(maxK)} in parent ${this.ref(parent)}`, true);
        }
      }
      const refs = this.details.get(pgid);
      if (ctx.mode === 'root') {
        const nb = refs ? refs.length : 0;
        if (nb < cnt) {
          this.addDefect(
            'BUCKET_MISSING',
            pgid,
            `the root bucket (leaf page ${pgid}) holds ${cnt - nb} plain key(s) where only buckets belong (etcdutl fails: cannot get hash of bucket)`,
            true,
          );
        }
        if (refs) for (const r of refs) this.topBucket(r, pgid, depth);
      } else {
        if (ctx.mode === 'top') {
          this.h = crc32cCombine(this.h, t.crc[pgid]!, t.dlen[pgid]!);
          ctx.count += cnt;
          if (last) ctx.last = last;
          if (ctx.isMeta) {
            const mv = this.metaVals.get(pgid);
            if (mv?.sv) ctx.sv = mv.sv;
          }
          if (ctx.isKey && cnt > 0) {
            const st = t.kvState[pgid];
            if (st === KV_RESOLVED) this.liveKeys += t.kvC[pgid]!;
            else {
              const why = st === KV_ERROR ? this.kvErrors.get(pgid)! : `its first key ${hexKey(this.leafFirstKey(pgid))} is not a revision`;
              this.addDefect('ELEMENT_BOUNDS', pgid, `bucket "key" leaf: ${why} (etcdutl fails on it)`, true);
            }
          }
        }
        if (refs) for (const r of refs) this.nestedBucket(r, pgid, depth);
      }
      return last;
    }
    this.addDefect(
      'PAGE_TYPE',
      pgid,
      `a ${pageTypeName(t.flags[pgid]!)} page where a branch or leaf page is expected (referenced by ${this.ref(parent)})`,
      true,
    );
    ctx.broken = true;
    return null;
  }

  private topBucket(r: BucketRef, pgid: number, depth: number): void {
    this.h = crc32c(r.name, this.h);
    const isKey = r.name.equals(KEY_NAME);
    const ctx: WalkCtx = { mode: 'top', count: 0, last: null, isMeta: r.name.equals(META_NAME), isKey, sv: undefined };
    if (r.inline) {
      const ib = r.inline;
      this.h = crc32cCombine(this.h, ib.crc, ib.len);
      ctx.count = ib.count;
      if (isKey && ib.count > 0) {
        const res = this.kvScratch;
        if (ib.page && analyseKv(ib.page, 0, ib.count, this.compactRev, null, res)) {
          this.liveKeys += res.contrib;
          this.bumpMarkers += res.markers;
        }
        else {
          const why = ib.page ? res.error! : 'its keys are not revisions';
          this.addDefect('ELEMENT_BOUNDS', pgid, `inline bucket "key": ${why} (etcdutl fails on it)`, true);
        }
      }
      if (ib.last) ctx.last = { b: ib.last, t: false };
      ctx.sv = ib.sv;
      for (const n of ib.nested) this.nestedBucket(n, pgid, depth);
    } else {
      this.walkPage(r.root, null, null, depth + 1, ctx, pgid);
    }
    const name = bytesToString(r.name);
    this.buckets[name] = ctx.count;
    if (name === 'key' && ctx.last) this.revision = mainRevision(ctx.last.b);
    if (ctx.isMeta) this.version = storageVersionString(ctx.sv);
  }

  private nestedBucket(r: BucketRef, pgid: number, depth: number): void {
    if (r.inline) {
      for (const n of r.inline.nested) this.nestedBucket(n, pgid, depth + 1);
      return;
    }
    this.walkPage(r.root, null, null, depth + 1, { mode: 'nested', count: 0, last: null, isMeta: false, isKey: false, sv: undefined }, pgid);
  }
}

const META_NAME = Buffer.from('meta');
const KEY_NAME = Buffer.from('key');

// ------------------------------------------------------------ entry points ---

/** Verifies a snapshot from any async byte source (chunks in file order). */
export async function verifySnapshotStream(source: AsyncIterable<Uint8Array>, opts?: VerifyOptions): Promise<SnapshotReport> {
  const v = new SnapshotVerifier(opts);
  for await (const chunk of source) v.update(chunk);
  return v.finish();
}

/** Files from this size on are hashed in a worker thread, in parallel with parsing. */
const PARALLEL_HASH_MIN = 64 * 1024 * 1024;
const READ_SIZE = 1 << 20;
/** Bytes read between two yields to the event loop (≈ 20–40 ms of work). */
const YIELD_EVERY = 32 * 1024 * 1024;

/**
 * Verifies a snapshot file, read sequentially in 1 MiB blocks (bounded memory).
 * Large files are read straight into the shared ring of the sha256 worker (no
 * copy) and parsed from there, the hash running in parallel. Rejects only on
 * I/O errors.
 */
export async function verifySnapshotFile(path: string, opts: VerifyOptions = {}): Promise<SnapshotReport> {
  const fh = await open(path, 'r');
  let v: SnapshotVerifier | undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      // A pipe or device: plain async streaming.
      return await verifySnapshotStream(fh.createReadStream({ highWaterMark: READ_SIZE, autoClose: false }), opts);
    }
    const size = st.size;
    v = new SnapshotVerifier({ ...opts, parallelHash: opts.parallelHash ?? size >= PARALLEL_HASH_MIN });
    let own: Buffer | undefined;
    let sinceYield = 0;
    for (;;) {
      const ring = ringSlot(v, READ_SIZE);
      const buf = ring ?? (own ??= Buffer.allocUnsafe(READ_SIZE));
      // Synchronous reads: a threadpool read would be a third busy thread
      // competing with this one and the hash worker (measurably slower).
      const n = readSync(fh.fd, buf, 0, buf.length, null);
      if (n === 0) break;
      if (ring) ringCommit(v, buf.subarray(0, n));
      else v.update(buf.subarray(0, n));
      sinceYield += n;
      if (sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await new Promise<void>((r) => setImmediate(r)); // let the event loop breathe
      }
    }
    const report = v.finish();
    v = undefined;
    return report;
  } finally {
    if (v) ringAbort(v);
    await fh.close();
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
