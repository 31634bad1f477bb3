/**
 * Per-page summaries, indexed by page id: what the tree walk needs of every
 * page once the bytes have streamed past (kind, header fields, a leaf's CRC and
 * first/last key, a branch's elements).
 */

// Page kinds in the per-page summary.
export const K_NONE = 0; // slot not received
export const K_BRANCH = 2;
export const K_LEAF = 3;
export const K_FREELIST = 4;
export const K_OTHER = 5; // meta/unknown flags in a data slot
export const K_ID_MISMATCH = 6;
export const K_ERROR = 7; // parse failed, see errors map
export const K_PENDING = 8; // multi-page span still being assembled

type Column = Uint8Array | Uint16Array | Uint32Array | Int32Array;

/** A copy of `a` with capacity `cap` (≥ a.length). */
export function grown<T extends Column>(a: T, cap: number): T {
  const n = new (a.constructor as new (len: number) => T)(cap);
  n.set(a as never);
  return n;
}

/** Capacity to grow a column of `len` to so that it holds index `i`: doubled, at least 1024. */
export function doubledFor(i: number, len: number): number {
  let cap = Math.max(1024, len * 2);
  while (cap <= i) cap *= 2;
  return cap;
}

/** Per-page summaries, indexed by page id; grown as pages stream by. */
export class PageTable {
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

  ensure(pgid: number): void {
    if (pgid < this.size) return;
    this.size = pgid + 1;
    if (pgid < this.kind.length) return;
    this.reserve(doubledFor(pgid, this.kind.length));
  }

  /** Capacity for `cap` pages (the high-water mark is known early: no doubling slack). */
  reserve(cap: number): void {
    if (cap <= this.kind.length) return;
    this.kind = grown(this.kind, cap);
    this.flags = grown(this.flags, cap);
    this.count = grown(this.count, cap);
    this.overflow = grown(this.overflow, cap);
    this.crc = grown(this.crc, cap);
    this.dlen = grown(this.dlen, cap);
    this.off = grown(this.off, cap);
    this.klen = grown(this.klen, cap);
  }
}

/** Branch elements of all branch pages: child pgid and (truncated) key. */
export class BranchTable {
  n = 0;
  /** Child pgid; ids ≥ 2^32 are stored as 0xFFFFFFFF (beyond any high-water mark we can hold). */
  child = new Uint32Array(1024);
  koff = new Uint32Array(1024);
  klen = new Uint8Array(1024);
  push(child: number, koff: number, klen: number): void {
    if (this.n === this.child.length) {
      const cap = this.n * 2;
      this.child = grown(this.child, cap);
      this.koff = grown(this.koff, cap);
      this.klen = grown(this.klen, cap);
    }
    this.child[this.n] = child > 0xffffffff ? 0xffffffff : child;
    this.koff[this.n] = koff;
    this.klen[this.n] = klen;
    this.n++;
  }
}
