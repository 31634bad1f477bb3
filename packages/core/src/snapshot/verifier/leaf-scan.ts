/**
 * One bbolt leaf page, read in place: bounds, strict key order, and the
 * CRC-32C of k1 v1 k2 v2 … that stands for the page in etcdutl's hash; the
 * bucket elements it holds (inline buckets parsed on the spot) and the meta
 * bucket values the verifier needs (storage version, compacted revisions).
 */
import { crc32c } from '../../crc32c.js';
import { BUCKET_HEADER_SIZE, ELEMENT_SIZE, FLAG_LEAF, LEAF_FLAG_BUCKET, PAGE_HEADER_SIZE, mainRevision, pageTypeName, u16, u32, u64 } from './bbolt-format.js';
import type { DefectCode } from './report.js';
import { bytesToString, cmpBytes, hexKey } from './summary-keys.js';

/** Names of the etcd buckets the verifier reads. */
export const META_NAME = Buffer.from('meta');
export const KEY_NAME = Buffer.from('key');

/** Result of scanning a leaf page's elements (reused scratch object). */
export interface LeafScan {
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

export function newScan(): LeafScan {
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
export function compactRevOf(b: Uint8Array, off: number, len: number): number {
  return len >= 8 ? mainRevision(b.subarray(off, off + 8)) : 0;
}

/**
 * Scans the leaf elements of a page at b[p..end): bounds, strict key order,
 * and the CRC-32C of k1 v1 k2 v2 … (bucket values excluded). Returns false with
 * s.code/s.reason set on the first problem.
 */
export function scanLeaf(b: Uint8Array, p: number, end: number, count: number, s: LeafScan): boolean {
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
export interface BucketRef {
  index: number;
  name: Buffer;
  root: number;
  inline: InlineBucket | null;
}

export interface InlineBucket {
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
export interface MetaVals {
  sv?: Buffer;
  fcr?: number;
  scr?: number;
}

export interface ParseError {
  code: DefectCode;
  reason: string;
}

/** Collects the bucket elements of an (already scanned) leaf; parses inline buckets on the spot. */
export function collectBuckets(b: Uint8Array, p: number, count: number, depth: number): BucketRef[] | ParseError {
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

export function looksLikeRevision(b: Uint8Array, k0: number, ks: number): boolean {
  return (ks === 17 || ks === 18) && b[k0 + 8] === 0x5f;
}
