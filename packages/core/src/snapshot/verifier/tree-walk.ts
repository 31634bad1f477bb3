/**
 * The walk of the live B+tree, after the pass, from the active meta page's
 * root in key order, over the page summaries. Checks what bbolt's tx.Check()
 * does — page bounds, ids and types, multiple references, reachable-and-freed,
 * unreachable-and-unfreed, key order against the parent's separator keys and
 * across sibling subtrees — and joins the per-leaf CRCs into etcdutl's hash:
 *
 *   h = crc32c(); for each top-level bucket b (key order): h.Write(name);
 *   for each k, v in b (key order): h.Write(k); h.Write(v)
 *
 * It also reads what the report says of the buckets (entries, revision,
 * storage version) and adds up the live keys of bucket `key`.
 */
import { crc32c, crc32cCombine } from '../../crc32c.js';
import { mainRevision, pageTypeName, storageVersionString } from './bbolt-format.js';
import { KEY_NAME, META_NAME, type BucketRef } from './leaf-scan.js';
import type { LiveKeyCount } from './live-keys.js';
import { MAX_DEPTH, type PageIndex } from './page-index.js';
import { K_BRANCH, K_ERROR, K_FREELIST, K_ID_MISMATCH, K_LEAF, K_NONE, K_PENDING } from './page-table.js';
import type { DefectLog } from './report.js';
import { bytesToString, cmpKey, hexKey, type Key } from './summary-keys.js';

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

export class TreeWalk {
  /** etcdutl's hash (CRC-32C), as far as walked. */
  hash = 0;
  /** Main revision of the last key of bucket "key". */
  revision = 0;
  /** Storage version (meta/storageVersion). */
  version: string | undefined;
  /** Entries per top-level bucket. */
  readonly buckets: Record<string, number> = {};
  /** Per page id: 1 reached, 2 free. */
  private mark = new Uint8Array(0);
  private size = 0;

  constructor(
    private readonly pages: PageIndex,
    private readonly keys: LiveKeyCount,
    private readonly defects: DefectLog,
  ) {}

  /** Walks the live tree from the active meta page's root; then checks that no page leaked. */
  run(): void {
    const pages = this.pages;
    const t = pages.table;
    const size = Math.max(2, Math.min(pages.hwm, t.size));
    this.size = size;
    const mark = (this.mark = new Uint8Array(size));
    mark[0] = 1;
    mark[1] = 1;
    const freelistOk = this.markFreelist();

    // The compacted revision, needed to count live keys (unless the root page already gave it).
    const keys = this.keys;
    if (keys.compactRev < 0) keys.setCompactRev(pages.findCompactRev());
    // A compaction scheduled past the finished one was still running (or, after
    // `--mark-compacted`, not yet run): old records are still in the bucket.
    keys.compactionPending = pages.findCompactRev('scr') > keys.compactRev;

    // The tree, from the root bucket.
    const rootCtx: WalkCtx = { mode: 'root', count: 0, last: null, isMeta: false, isKey: false, sv: undefined };
    this.walkPage(pages.root, null, null, 0, rootCtx, -1);
    keys.settle();
    for (const name of ['key', 'meta']) {
      if (!(name in this.buckets) && !rootCtx.broken) {
        this.defects.add('BUCKET_MISSING', undefined, `bucket "${name}" is missing: this is not an etcd snapshot (etcd always creates it)`, true);
      }
    }

    // Every page below the high-water mark is meta, reachable or free. (Without a
    // persisted freelist bbolt derives it as "all unreachable pages": nothing to check.)
    if (pages.freelistPgid >= 0 && freelistOk) this.reportLeaked();
  }

  /** Marks the freelist page and the pages it lists; whether it could be read (true when there is none). */
  private markFreelist(): boolean {
    const pages = this.pages;
    const t = pages.table;
    const hwm = pages.hwm;
    const size = this.size;
    const mark = this.mark;
    const fp = pages.freelistPgid;
    if (fp < 0) return true;
    if (fp >= hwm) {
      this.defects.add('PAGE_OUT_OF_BOUNDS', fp, `the freelist page is beyond the high-water mark ${hwm}`, true);
    } else if (fp < 2) {
      this.defects.add('PAGE_TYPE', fp, `the freelist page id points at a meta page`, true);
    } else if (fp >= t.size || t.kind[fp] === K_NONE || t.kind[fp] === K_PENDING) {
      this.defects.add('TRUNCATED', fp, `the freelist page is missing: the file ends before it`, true);
    } else if (t.kind[fp] === K_ID_MISMATCH) {
      this.defects.add('PAGE_ID_MISMATCH', fp, `the freelist page's header carries page id ${t.crc[fp]}`, true);
    } else if (t.kind[fp] === K_ERROR) {
      const e = pages.errors.get(fp)!;
      this.defects.add(e.code, fp, `freelist page: ${e.reason}`, true);
    } else if (t.kind[fp] !== K_FREELIST) {
      this.defects.add('PAGE_TYPE', fp, `the meta page's freelist page is a ${pageTypeName(t.flags[fp]!)} page`, true);
    } else {
      const ids = pages.freeIds!;
      let dups = 0;
      for (let j = 0; j < ids.length; j++) {
        const id = ids[j]!;
        if (id >= size) continue;
        if (mark[id]! & 2) {
          if (dups++ < 10) this.defects.add('PAGE_DOUBLE_REF', id, 'already freed (listed twice in the freelist)', true);
        }
        mark[id]! |= 2;
      }
      const ov = t.overflow[fp]!;
      for (let id = fp; id <= fp + ov && id < size; id++) mark[id]! |= 1;
      return true;
    }
    return false;
  }

  /** Reports the runs of pages that are neither reachable nor free. */
  private reportLeaked(): void {
    const mark = this.mark;
    const limit = Math.min(this.pages.hwm, this.pages.table.size);
    let runStart = -1;
    for (let id = 2; id <= limit; id++) {
      const unreachable = id < limit && (mark[id]! & 3) === 0;
      if (unreachable && runStart < 0) runStart = id;
      else if (!unreachable && runStart >= 0) {
        const last = id - 1;
        this.defects.add(
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

  private ref(parent: number): string {
    return parent < 0 ? 'the meta page' : `page ${parent}`;
  }

  /** Walks the subtree of `pgid`, whose keys must lie in [minK, maxK); returns its largest key. */
  private walkPage(pgid: number, minK: Key | null, maxK: Key | null, depth: number, ctx: WalkCtx, parent: number): Key | null {
    const kind = this.enter(pgid, depth, ctx, parent);
    if (kind === K_BRANCH) return this.walkBranch(pgid, minK, maxK, depth, ctx, parent);
    if (kind === K_LEAF) return this.walkLeaf(pgid, minK, maxK, depth, ctx, parent);
    if (kind >= 0) {
      this.defects.add(
        'PAGE_TYPE',
        pgid,
        `a ${pageTypeName(this.pages.table.flags[pgid]!)} page where a branch or leaf page is expected (referenced by ${this.ref(parent)})`,
        true,
      );
      ctx.broken = true;
    }
    return null;
  }

  /**
   * Checks that the walk can go into `pgid` (bounds, presence, id, reachable
   * once and not free, parsed) and marks its span reached. Returns its kind, or
   * -1 after logging why not (the tree is then broken).
   */
  private enter(pgid: number, depth: number, ctx: WalkCtx, parent: number): number {
    const pages = this.pages;
    const t = pages.table;
    if (depth > MAX_DEPTH) {
      this.defects.add('PAGE_TYPE', pgid, `tree nested deeper than ${MAX_DEPTH} levels below ${this.ref(parent)}: a reference cycle`, true);
      ctx.broken = true;
      return -1;
    }
    if (pgid >= pages.hwm) {
      this.defects.add('PAGE_OUT_OF_BOUNDS', pgid, `referenced by ${this.ref(parent)} but beyond the high-water mark ${pages.hwm}`, true);
      ctx.broken = true;
      return -1;
    }
    if (pgid < 2) {
      this.defects.add('PAGE_DOUBLE_REF', pgid, `a meta page, referenced as a tree page by ${this.ref(parent)}`, true);
      ctx.broken = true;
      return -1;
    }
    const kind = pgid < t.size ? t.kind[pgid]! : K_NONE;
    if (kind === K_NONE || kind === K_PENDING) {
      this.defects.add('TRUNCATED', pgid, `missing: the file ends before it (referenced by ${this.ref(parent)})`, true);
      ctx.broken = true;
      return -1;
    }
    if (kind === K_ID_MISMATCH) {
      const id = t.crc[pgid]!;
      this.defects.add('PAGE_ID_MISMATCH', pgid, `its header carries page id ${id === 0xffffffff ? '≥2^32' : id} (referenced by ${this.ref(parent)})`, true);
      ctx.broken = true;
      return -1;
    }
    // Reachability: every page of the span is referenced once and not free.
    const mark = this.mark;
    const ov = t.overflow[pgid]!;
    const spanEnd = Math.min(pgid + ov, this.size - 1);
    let dup = false;
    for (let id = pgid; id <= spanEnd; id++) {
      const m = mark[id]!;
      if (m & 1) {
        this.defects.add('PAGE_DOUBLE_REF', id, `multiple references (reached again via ${this.ref(parent)})`, true);
        dup = true;
      } else if (m & 2) {
        this.defects.add('PAGE_DOUBLE_REF', id, 'reachable from the tree but also listed in the freelist', true);
      }
      mark[id] = m | 1;
    }
    if (dup) {
      ctx.broken = true;
      return -1;
    }
    if (kind === K_ERROR) {
      const e = pages.errors.get(pgid)!;
      this.defects.add(e.code, pgid, e.reason, true);
      ctx.broken = true;
      return -1;
    }
    return kind;
  }

  private walkBranch(pgid: number, minK: Key | null, maxK: Key | null, depth: number, ctx: WalkCtx, parent: number): Key | null {
    const pages = this.pages;
    const t = pages.table;
    const start = t.off[pgid]!;
    const cnt = t.count[pgid]!;
    const br = pages.branches;
    let running = minK;
    let maxSub: Key | null = null;
    let key = cnt > 0 ? pages.branchKey(start) : null;
    for (let i = 0; i < cnt; i++) {
      const k = key!;
      if (running) {
        const c = cmpKey(running, k);
        if (i === 0 ? c > 0 : c >= 0) {
          this.defects.add(
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
        this.defects.add('KEY_ORDER', pgid, `key order violated in branch: key[${i}]=${hexKey(k)} is not < the next separator key ${hexKey(maxK)} in parent ${this.ref(parent)}`, true);
      }
      const next = i + 1 < cnt ? pages.branchKey(start + i + 1) : null;
      maxSub = this.walkPage(br.child[start + i]!, k, next ?? maxK, depth + 1, ctx, pgid);
      running = maxSub;
      key = next;
    }
    return maxSub;
  }

  private walkLeaf(pgid: number, minK: Key | null, maxK: Key | null, depth: number, ctx: WalkCtx, parent: number): Key | null {
    const pages = this.pages;
    const t = pages.table;
    const cnt = t.count[pgid]!;
    let last: Key | null = null;
    if (cnt > 0) {
      const o = t.off[pgid]!;
      const kl = t.klen[pgid]!;
      const fl = kl & 0x7f;
      const ll = (kl >>> 8) & 0x7f;
      const buf = pages.arena.buf;
      const first: Key = { b: buf.subarray(o, o + fl), t: (kl & 0x80) !== 0 };
      last = { b: buf.subarray(o + fl, o + fl + ll), t: (kl & 0x8000) !== 0 };
      if (minK && cmpKey(minK, first) > 0) {
        this.defects.add('KEY_ORDER', pgid, `key order violated in leaf: first key ${hexKey(first)} is < the separator key ${hexKey(minK)} in parent ${this.ref(parent)}`, true);
      }
      if (maxK && cmpKey(last, maxK) >= 0) {
        this.defects.add('KEY_ORDER', pgid, `key order violated in leaf: last key ${hexKey(last)} is not < the next separator key ${hexKey(maxK)} in parent ${this.ref(parent)}`, true);
      }
    }
    const refs = pages.details.get(pgid);
    if (ctx.mode === 'root') {
      const nb = refs ? refs.length : 0;
      if (nb < cnt) {
        this.defects.add(
          'BUCKET_MISSING',
          pgid,
          `the root bucket (leaf page ${pgid}) holds ${cnt - nb} plain key(s) where only buckets belong (etcdutl fails: cannot get hash of bucket)`,
          true,
        );
      }
      if (refs) for (const r of refs) this.topBucket(r, pgid, depth);
    } else {
      if (ctx.mode === 'top') {
        this.hash = crc32cCombine(this.hash, t.crc[pgid]!, t.dlen[pgid]!);
        ctx.count += cnt;
        if (last) ctx.last = last;
        if (ctx.isMeta) {
          const mv = pages.metaVals.get(pgid);
          if (mv?.sv) ctx.sv = mv.sv;
        }
        if (ctx.isKey && cnt > 0) {
          const problem = this.keys.countPage(pgid);
          if (problem !== null) {
            const why = problem ?? `its first key ${hexKey(pages.leafFirstKey(pgid))} is not a revision`;
            this.defects.add('ELEMENT_BOUNDS', pgid, `bucket "key" leaf: ${why} (etcdutl fails on it)`, true);
          }
        }
      }
      if (refs) for (const r of refs) this.nestedBucket(r, pgid, depth);
    }
    return last;
  }

  private topBucket(r: BucketRef, pgid: number, depth: number): void {
    this.hash = crc32c(r.name, this.hash);
    const isKey = r.name.equals(KEY_NAME);
    const ctx: WalkCtx = { mode: 'top', count: 0, last: null, isMeta: r.name.equals(META_NAME), isKey, sv: undefined };
    if (r.inline) {
      const ib = r.inline;
      this.hash = crc32cCombine(this.hash, ib.crc, ib.len);
      ctx.count = ib.count;
      if (isKey && ib.count > 0) {
        const why = this.keys.countInline(ib.page, ib.count);
        if (why !== null) this.defects.add('ELEMENT_BOUNDS', pgid, `inline bucket "key": ${why} (etcdutl fails on it)`, true);
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
