/**
 * The bbolt pages as they stream by. Every page slot below the high-water mark
 * is parsed speculatively (we cannot know yet whether it is reachable, free, or
 * the continuation of an overflow page) and summarised in the page table;
 * parse problems are kept and only reported if the tree walk reaches the page.
 * Leaves that look like `key` bucket pages go to the live-key count.
 */
import {
  ELEMENT_SIZE, FLAG_BRANCH, FLAG_FREELIST, FLAG_LEAF, FREELIST_COUNT_OVERFLOW, PAGE_HEADER_SIZE, u16, u32, u64, type MetaInfo,
} from './bbolt-format.js';
import {
  META_NAME, collectBuckets, compactRevOf, looksLikeRevision, newScan, scanLeaf, type BucketRef, type MetaVals, type ParseError,
} from './leaf-scan.js';
import type { LiveKeyCount } from './live-keys.js';
import type { Span } from './page-stream.js';
import { BranchTable, K_BRANCH, K_ERROR, K_FREELIST, K_ID_MISMATCH, K_LEAF, K_OTHER, K_PENDING, PageTable } from './page-table.js';
import type { DefectCode } from './report.js';
import { ByteBuf, MAX_KEY, cmpBytes, hexKey, lenByte, type Key } from './summary-keys.js';

/** Largest page (with its overflow) assembled in memory. */
const MAX_SPAN = 256 * 1024 * 1024;
/** Deepest B+tree nesting walked (bbolt trees are a handful of levels deep). */
export const MAX_DEPTH = 256;

/** Summaries of the pages seen, and what parsing them found. */
export class PageIndex {
  readonly table = new PageTable();
  readonly branches = new BranchTable();
  /** Keys of the summaries: each leaf's first and last, each branch element's. */
  readonly arena = new ByteBuf(1 << 16);
  /** Why a page (kind K_ERROR) could not be parsed. */
  readonly errors = new Map<number, ParseError>();
  /** Bucket elements of the leaves that hold some. */
  readonly details = new Map<number, BucketRef[]>();
  readonly metaVals = new Map<number, MetaVals>();
  /** Page ids the freelist page lists. */
  freeIds: Float64Array | null = null;
  private readonly scan = newScan();

  // From the active meta page (start()).
  ps = 0;
  hwm = 0;
  root = 0;
  freelistPgid = -1;

  constructor(private readonly keys: LiveKeyCount) {}

  /** The active meta page is known: page size, high-water mark, root and freelist. */
  start(pageSize: number, active: MetaInfo): void {
    this.ps = pageSize;
    this.hwm = active.hwm;
    this.root = active.root;
    this.table.reserve(Math.min(active.hwm, 1 << 22));
    this.freelistPgid = active.noFreelist ? -1 : active.freelist;
  }

  /**
   * Summarises data page slot `pgid` (≥ 2) at b[off..), parsing it when it is a
   * tree page or the freelist. Returns the span to wait for when the page's
   * overflow runs past regionEnd (the end of the bytes at hand).
   */
  slot(b: Buffer, off: number, regionEnd: number, pgid: number): Span | null {
    const t = this.table;
    t.ensure(pgid);
    const idLo = u32(b, off);
    const idHi = u32(b, off + 4);
    if (idHi !== 0 || idLo !== pgid) {
      t.kind[pgid] = K_ID_MISMATCH;
      t.crc[pgid] = idHi !== 0 ? 0xffffffff : idLo;
      return null;
    }
    const flags = u16(b, off + 8);
    const overflow = u32(b, off + 12);
    t.flags[pgid] = flags;
    t.count[pgid] = u16(b, off + 10);
    t.overflow[pgid] = overflow;
    const isTree = (flags & (FLAG_BRANCH | FLAG_LEAF)) !== 0;
    if (!isTree && !(flags & FLAG_FREELIST && pgid === this.freelistPgid)) {
      t.kind[pgid] = flags & FLAG_FREELIST ? K_FREELIST : K_OTHER;
      return null;
    }
    if (overflow === 0) {
      this.parse(b, off, off + this.ps, pgid);
      return null;
    }
    if (pgid + overflow >= this.hwm) {
      this.setError(pgid, 'PAGE_OUT_OF_BOUNDS', `page with ${overflow} overflow page(s) extends past the high-water mark ${this.hwm}`);
      return null;
    }
    const span = (overflow + 1) * this.ps;
    if (span > MAX_SPAN) {
      this.setError(pgid, 'ELEMENT_BOUNDS', `page spans ${span} bytes (${overflow} overflow pages), more than the verifier's ${MAX_SPAN}-byte limit`);
      return null;
    }
    if (off + span <= regionEnd) {
      this.parse(b, off, off + span, pgid);
      return null;
    }
    t.kind[pgid] = K_PENDING;
    return { pgid, start: pgid * this.ps, end: pgid * this.ps + span };
  }

  private setError(pgid: number, code: DefectCode, reason: string): void {
    this.table.kind[pgid] = K_ERROR;
    this.errors.set(pgid, { code, reason });
  }

  /** Parses tree or freelist page `pgid` at b[p..end) (with its overflow) into the summaries. */
  parse(b: Buffer, p: number, end: number, pgid: number): void {
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
    if (count > 0 && looksLikeRevision(b, s.firstOff, s.firstLen)) this.keys.addPage(b, p, count, pgid);
    // The live root page: its inline meta bucket gives the compacted revision,
    // so the detail kept for `key` pages can be folded into counts right away.
    if (this.keys.compactRev < 0 && pgid === this.root) {
      const meta = this.details.get(pgid)?.find((r) => r.name.equals(META_NAME));
      if (meta?.inline) this.keys.setCompactRev(meta.inline.fcr ?? 0);
    }
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

  leafFirstKey(pgid: number): Key {
    const o = this.table.off[pgid]!;
    const l = this.table.klen[pgid]! & 0xff;
    return { b: this.arena.buf.subarray(o, o + (l & 0x7f)), t: (l & 0x80) !== 0 };
  }

  branchKey(i: number): Key {
    const br = this.branches;
    const l = br.klen[i]!;
    const o = br.koff[i]!;
    return { b: this.arena.buf.subarray(o, o + (l & 0x7f)), t: (l & 0x80) !== 0 };
  }

  /**
   * meta/finishedCompactRev of the live tree (0 when absent), looked up before
   * the walk because bucket "key" sorts before "meta". Read-only, cycle-safe.
   */
  findCompactRev(which: 'fcr' | 'scr' = 'fcr'): number {
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
    const meta = findMeta(this.root, 0);
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
}
