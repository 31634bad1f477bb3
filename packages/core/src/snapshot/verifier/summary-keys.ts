/**
 * Keys as the per-page summaries keep them — a prefix of at most MAX_KEY bytes
 * and whether it was cut — the growable buffers that hold them, and how they
 * compare and print.
 */

/** Bytes of a key kept in the per-page summaries. */
export const MAX_KEY = 64;

/** A growable byte buffer. */
export class ByteBuf {
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
export interface Key {
  b: Uint8Array;
  t: boolean;
}

export function lenByte(n: number): number {
  return n > MAX_KEY ? MAX_KEY | 0x80 : n;
}

/** Byte-wise compare of a[ao..ao+al) and b[bo..bo+bl). */
export function cmpBytes(a: Uint8Array, ao: number, al: number, b: Uint8Array, bo: number, bl: number): number {
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
export function cmpKey(a: Key, b: Key): number {
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

export function hexKey(k: Key | Uint8Array): string {
  const b = k instanceof Uint8Array ? k : k.b;
  const cut = !(k instanceof Uint8Array) && k.t;
  const shown = b.length > 40 ? b.subarray(0, 40) : b;
  return Buffer.from(shown.buffer, shown.byteOffset, shown.byteLength).toString('hex') + (cut || shown.length < b.length ? '…' : '');
}

export function bytesToString(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
}
