/**
 * LZW decompression, streaming, in the two dialects etcd backups come in:
 * - 'compress': Unix compress (.Z): magic 1f 9d, a flags byte (max code width 9-16, block mode
 *   with code 256 = CLEAR), codes LSB first from 9 bits; whenever the width changes or a CLEAR is
 *   read, the rest of the current group of eight codes is padding (compress writes its code
 *   buffer whole).
 * - 'go': Go's compress/lzw with LSB order and 8-bit literals (Gardener's "lzw" policy): no header,
 *   clear = 256, end = 257, codes from 9 up to 12 bits, the width growing one code earlier than
 *   compress (GIF's rule), no padding.
 * Memory: the code table (at most 64 Ki entries) and one decoded string.
 */
export type LzwDialect = 'compress' | 'go';

export class LzwError extends Error {}

/** The `compress` header: max code width and block mode, or why it is not one. */
export function parseCompressHeader(h: Uint8Array): { maxBits: number; block: boolean } | string {
  if (h.length < 3 || h[0] !== 0x1f || h[1] !== 0x9d) return 'no compress (.Z) magic';
  const maxBits = h[2]! & 0x1f;
  if (maxBits < 9 || maxBits > 16) return `compress header names ${maxBits}-bit codes (9-16 are valid)`;
  return { maxBits, block: (h[2]! & 0x80) !== 0 };
}

export class LzwDecoder {
  private readonly go: boolean;
  private headerLeft: number;
  private maxBits = 12;
  private block = true;
  private readonly prefix: Uint16Array;
  private readonly suffix: Uint8Array;
  private readonly stack: Uint8Array;
  private width = 9;
  /** Next table entry to be assigned. */
  private next = 0;
  /** Width grows once `next` reaches this. */
  private limit = 0;
  private last = -1;
  private first = 0;
  private acc = 0;
  private bits = 0;
  /** Codes read since the width last changed (compress: the groups of eight). */
  private run = 0;
  /** Bits still to discard (compress: group padding). */
  private skipBits = 0;
  private done = false;
  private header: number[] = [];

  constructor(dialect: LzwDialect) {
    this.go = dialect === 'go';
    this.headerLeft = this.go ? 0 : 3;
    const size = this.go ? 4096 : 65536;
    this.prefix = new Uint16Array(size);
    this.suffix = new Uint8Array(size);
    this.stack = new Uint8Array(size + 1);
    if (this.go) this.reset();
  }

  private reset(): void {
    this.width = 9;
    this.next = this.go ? 258 : this.block ? 257 : 256;
    this.limit = 512;
    this.last = -1;
    this.run = 0;
  }

  /** True once Go's end code was read (later bytes are ignored). */
  get ended(): boolean {
    return this.done;
  }

  /** Decodes a chunk; decoded bytes go to `emit` in pieces of at most `piece` bytes. */
  push(chunk: Uint8Array, emit: (b: Buffer) => void, piece = 1 << 16): void {
    let out = Buffer.allocUnsafe(piece);
    let o = 0;
    const put = (b: number): void => {
      if (o === out.length) {
        emit(out);
        out = Buffer.allocUnsafe(piece);
        o = 0;
      }
      out[o++] = b;
    };
    let i = 0;
    while (this.headerLeft > 0 && i < chunk.length) {
      this.header.push(chunk[i++]!);
      if (--this.headerLeft === 0) {
        const h = parseCompressHeader(Uint8Array.from(this.header));
        if (typeof h === 'string') throw new LzwError(h);
        this.maxBits = h.maxBits;
        this.block = h.block;
        this.reset();
      }
    }
    for (; i < chunk.length && !this.done; i++) {
      let byte = chunk[i]!;
      let avail = 8;
      if (this.skipBits > 0) {
        const k = Math.min(this.skipBits, 8);
        this.skipBits -= k;
        if (k === 8) continue;
        byte >>>= k;
        avail -= k;
      }
      this.acc |= byte << this.bits;
      this.bits += avail;
      while (this.bits >= this.width && !this.done) {
        const code = this.acc & ((1 << this.width) - 1);
        this.acc >>>= this.width;
        this.bits -= this.width;
        this.code(code, put);
      }
    }
    if (o > 0) emit(out.subarray(0, o));
  }

  /** Discards the rest of the current group of eight codes (compress), bits held included. */
  private pad(): void {
    const codes = this.run % 8 === 0 ? 0 : 8 - (this.run % 8);
    let skip = codes * this.width;
    const held = Math.min(skip, this.bits);
    this.acc >>>= held;
    this.bits -= held;
    skip -= held;
    this.skipBits = skip;
    this.run = 0;
  }

  private code(code: number, put: (b: number) => void): void {
    this.run++;
    if (this.go) {
      if (code === 256) return this.reset();
      if (code === 257) {
        this.done = true;
        return;
      }
    } else if (code === 256 && this.block) {
      this.pad();
      this.width = 9;
      this.next = 257;
      this.limit = 512;
      this.last = -1;
      return;
    }
    if (this.last < 0) {
      if (code > 255) throw new LzwError(`invalid LZW data: code ${code} where a literal must start`);
      put(code);
      this.first = code;
      this.last = code;
      this.grow();
      return;
    }
    let c = code;
    let sp = 0;
    if (code === this.next) {
      // The string being defined: the previous one plus its own first byte.
      this.stack[sp++] = this.first;
      c = this.last;
    } else if (code > this.next) {
      throw new LzwError(`invalid LZW data: code ${code} beyond the table (${this.next})`);
    }
    while (c > 255) {
      this.stack[sp++] = this.suffix[c]!;
      c = this.prefix[c]!;
    }
    this.stack[sp++] = c;
    this.first = c;
    while (sp > 0) put(this.stack[--sp]!);
    const cap = this.go ? 4096 : 1 << this.maxBits;
    if (this.next < cap) {
      this.prefix[this.next] = this.last;
      this.suffix[this.next] = c;
      this.next++;
    }
    this.last = code;
    this.grow();
  }

  private grow(): void {
    if (this.go) {
      if (this.next >= this.limit && this.width < 12) {
        this.width++;
        this.limit <<= 1;
      }
      return;
    }
    if (this.next > (1 << this.width) - 1 && this.width < this.maxBits) {
      this.pad();
      this.width++;
    }
  }
}

/** Decodes at most `max` bytes from the start of `head` (for sniffing); undefined when it is not valid LZW. */
export function lzwPrefix(head: Uint8Array, dialect: LzwDialect, max: number): Buffer | undefined {
  const d = new LzwDecoder(dialect);
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for (let i = 0; i < head.length && n < max; i += 1024) {
      d.push(head.subarray(i, i + 1024), (b) => {
        parts.push(Buffer.from(b));
        n += b.length;
      });
    }
  } catch {
    return undefined;
  }
  return Buffer.concat(parts).subarray(0, max);
}
