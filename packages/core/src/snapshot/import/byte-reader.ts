/**
 * A pull reader over a stream of chunks: exact reads, peeks and skips, and bytes handed back
 * (`unread`) when a parser read past the end of what it owned (a deflate stream inside a zip).
 * Memory is what the caller asks for at once plus at most one source chunk.
 */
export class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  /** Bytes pulled from the source but not yet consumed: chunks, the first one from `off`. */
  private held: Buffer[] = [];
  private off = 0;
  private heldLen = 0;
  private ended = false;
  /** Bytes consumed so far (what read/skip/readSome returned). */
  position = 0;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Pulls until at least `n` bytes are held or the source ends; returns how many are held. */
  private async fill(n: number): Promise<number> {
    while (this.heldLen < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      const c = r.value;
      if (!c.length) continue;
      // A copy: sources may lend their buffers (borrowed chunks), and held bytes outlive the next pull.
      this.held.push(Buffer.from(c));
      this.heldLen += c.length;
    }
    return this.heldLen;
  }

  private take(n: number, consume: boolean): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.held[0]!;
    if (first.length - this.off >= n) {
      const out = first.subarray(this.off, this.off + n);
      if (consume) this.drop(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    let i = 0;
    let off = this.off;
    while (done < n) {
      const c = this.held[i]!;
      const k = Math.min(n - done, c.length - off);
      c.copy(out, done, off, off + k);
      done += k;
      i++;
      off = 0;
    }
    if (consume) this.drop(n);
    return out;
  }

  private drop(n: number): void {
    this.heldLen -= n;
    this.position += n;
    while (n > 0) {
      const c = this.held[0]!;
      const left = c.length - this.off;
      if (n < left) {
        this.off += n;
        return;
      }
      n -= left;
      this.held.shift();
      this.off = 0;
    }
  }

  /** The next `n` bytes without consuming them (fewer only at the end of the source). */
  async peek(n: number): Promise<Buffer> {
    const have = await this.fill(n);
    return this.take(Math.min(n, have), false);
  }

  /** Exactly `n` bytes, or fewer only at the end of the source (the caller decides if that is truncation). */
  async read(n: number): Promise<Buffer> {
    const have = await this.fill(n);
    return this.take(Math.min(n, have), true);
  }

  /** Up to `max` bytes, at least one unless the source has ended (then empty). */
  async readSome(max: number): Promise<Buffer> {
    if (this.heldLen === 0) await this.fill(1);
    return this.take(Math.min(max, this.heldLen, (this.held[0]?.length ?? 0) - this.off), true);
  }

  /** Skips up to `n` bytes; returns how many were skipped (fewer only at the end of the source). */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const got = await this.readSome(Math.min(left, 1 << 20));
      if (!got.length) break;
      left -= got.length;
    }
    return n - left;
  }

  /** Gives back the tail of what was last read: it is read again next. */
  unread(b: Buffer): void {
    if (!b.length) return;
    if (this.off > 0) {
      this.held[0] = this.held[0]!.subarray(this.off);
      this.off = 0;
    }
    this.held.unshift(Buffer.from(b));
    this.heldLen += b.length;
    this.position -= b.length;
  }

  /** True once every byte of the source was consumed. */
  async atEnd(): Promise<boolean> {
    return (await this.fill(1)) === 0;
  }

  /** Up to `n` bytes as a stream of chunks (the reader's position moves with them). */
  async *stream(n = Infinity, chunk = 1 << 20): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      const got = await this.readSome(Math.min(left, chunk));
      if (!got.length) return;
      left -= got.length;
      yield got;
    }
  }

  /** Stops the source (e.g. closes a file or an HTTP body) when the reader is given up early. */
  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      await this.it.return?.();
    }
    this.held = [];
    this.heldLen = 0;
  }
}
