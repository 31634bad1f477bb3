/**
 * Cuts the byte stream into page slots, in file order. Each complete slot, and
 * each multi-page span asked for, goes to the sink while its bytes are still in
 * the caller's chunk; only what straddles chunks (a slot cut by a chunk
 * boundary, a span still being assembled) is copied.
 */
import { ByteBuf } from './summary-keys.js';

/** A page with its overflow pages: file bytes [start, end). */
export interface Span {
  pgid: number;
  start: number;
  end: number;
}

export interface PageSink {
  /** Slot `pgid` at b[off..off + pageSize); b holds the bytes at hand up to regionEnd. */
  slot(b: Buffer, off: number, regionEnd: number, pgid: number): void;
  /** A span passed to wait(), complete at b[start..end). */
  span(b: Buffer, start: number, end: number, pgid: number): void;
}

export class PageStream {
  /** Slots below it are handed on: the high-water mark once the meta page is known. */
  limitSlots = Infinity;
  private stopped = false;
  /** File offset of the next byte fed. */
  private fed = 0;
  private nextSlot = 0;
  private acc: ByteBuf | null = null;
  private accStart = 0;
  private waiting: Span[] = [];

  constructor(
    private readonly ps: number,
    private readonly sink: PageSink,
  ) {}

  /** Holds on to the bytes of `span` until it is complete. */
  wait(span: Span): void {
    this.waiting.push(span);
  }

  /** No more pages: drops what is retained and ignores what comes. */
  stop(): void {
    this.stopped = true;
    this.acc = null;
    this.waiting = [];
    this.limitSlots = 0;
  }

  /** Feeds bytes (file offset this.fed) to the page slot processor. */
  feed(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n && !this.stopped) {
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
      this.sink.slot(b, start + (s - base), end, this.nextSlot);
      this.nextSlot++;
    }
    if (this.waiting.length > 0) {
      const w = this.waiting;
      for (let j = 0; j < w.length; ) {
        const sp = w[j]!;
        if (sp.end <= fileEnd) {
          w.splice(j, 1);
          this.sink.span(b, start + (sp.start - base), start + (sp.end - base), sp.pgid);
        } else j++;
      }
    }
  }
}
