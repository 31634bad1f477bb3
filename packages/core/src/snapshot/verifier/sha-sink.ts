/**
 * sha256 of a byte stream, holding back the last 32 bytes (a possible etcd
 * snapshot trailer) so that both digests — of the content before them and of
 * everything — are available at the end.
 *
 * Two implementations:
 *  - InlineSha: node:crypto in the calling thread;
 *  - WorkerSha: node:crypto in a worker thread fed through a SharedArrayBuffer
 *    ring, so hashing (the most expensive part of verifying a local file) runs
 *    in parallel with page parsing. Synchronous API: the producer blocks with
 *    Atomics.wait only when the ring is full, and in finish().
 */
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

export const HOLD_BACK = 32;

export interface ShaResult {
  /** sha256 of all bytes but the last min(32, total). */
  content: Buffer;
  /** sha256 of all bytes. */
  all: Buffer;
  /** The last min(32, total) bytes. */
  tail: Buffer;
}

export interface ShaSink {
  push(b: Uint8Array): void;
  finish(): ShaResult;
  /** Zero-copy (WorkerSha only): a writable view of at most `max` bytes; then commit(n). */
  slot(max: number): Buffer | null;
  commit(n: number): void;
  /** Releases resources without a result (after an I/O error). */
  abort(): void;
}

export class InlineSha implements ShaSink {
  private readonly sha: Hash = createHash('sha256');
  private readonly tail = Buffer.alloc(HOLD_BACK);
  private tailLen = 0;

  push(b: Uint8Array): void {
    const n = b.length;
    const tail = this.tail;
    if (n >= HOLD_BACK) {
      if (this.tailLen > 0) this.sha.update(this.tailLen === HOLD_BACK ? tail : tail.subarray(0, this.tailLen));
      if (n > HOLD_BACK) this.sha.update(b.subarray(0, n - HOLD_BACK));
      tail.set(b.subarray(n - HOLD_BACK, n), 0);
      this.tailLen = HOLD_BACK;
      return;
    }
    const all = this.tailLen + n;
    if (all <= HOLD_BACK) {
      tail.set(b, this.tailLen);
      this.tailLen = all;
      return;
    }
    const drop = all - HOLD_BACK;
    this.sha.update(tail.subarray(0, drop));
    tail.copyWithin(0, drop, this.tailLen);
    tail.set(b, this.tailLen - drop);
    this.tailLen = HOLD_BACK;
  }

  finish(): ShaResult {
    const tail = Buffer.from(this.tail.subarray(0, this.tailLen));
    const content = this.sha.copy().digest();
    this.sha.update(tail);
    return { content, all: this.sha.digest(), tail };
  }

  slot(): Buffer | null {
    return null;
  }

  commit(): void {
    throw new Error('InlineSha has no ring');
  }

  abort(): void {}
}

// ctl (BigInt64Array): [0] committed (hashable up to), [1] consumed, [2] state, [3] total at finish
// sig (Int32Array):    [0] producer → worker wake-ups, [1] worker → producer wake-ups
// state 0: running
const S_FINISH = 1n;
const S_DONE = 2n;
const S_ERROR = 3n;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { ring, ctl, sig, out } = workerData;
const R = ring.byteLength;
const buf = Buffer.from(ring);
const c = new BigInt64Array(ctl);
const s = new Int32Array(sig);
const o = new Uint8Array(out);
const h = createHash('sha256');
let consumed = 0;
function hashTo(end, hash) {
  while (consumed < end) {
    const off = consumed % R;
    const n = Math.min(end - consumed, R - off);
    hash.update(buf.subarray(off, off + n));
    consumed += n;
  }
}
function wake() { Atomics.add(s, 1, 1); Atomics.notify(s, 1); }
try {
  for (;;) {
    const seq = Atomics.load(s, 0);
    const committed = Number(Atomics.load(c, 0));
    if (committed > consumed) {
      hashTo(committed, h);
      Atomics.store(c, 1, BigInt(consumed));
      wake();
      continue;
    }
    if (Atomics.load(c, 2) === ${S_FINISH}n) {
      const total = Number(Atomics.load(c, 3));
      o.set(h.copy().digest(), 0);
      hashTo(total, h);
      o.set(h.digest(), 32);
      Atomics.store(c, 1, BigInt(consumed));
      Atomics.store(c, 2, ${S_DONE}n);
      wake();
      break;
    }
    Atomics.wait(s, 0, seq);
  }
} catch (e) {
  Atomics.store(c, 2, ${S_ERROR}n);
  wake();
}
`;

export class WorkerSha implements ShaSink {
  private readonly size: number;
  private readonly rb: Buffer;
  private readonly ctl: BigInt64Array;
  private readonly sig: Int32Array;
  private readonly out: Uint8Array;
  private readonly worker: Worker;
  private written = 0;

  /** Throws when a worker cannot be started (callers fall back to InlineSha). */
  constructor(ringSize = 8 * 1024 * 1024) {
    this.size = ringSize;
    const ring = new SharedArrayBuffer(ringSize);
    const ctl = new SharedArrayBuffer(4 * 8);
    const sig = new SharedArrayBuffer(2 * 4);
    const out = new SharedArrayBuffer(64);
    this.rb = Buffer.from(ring);
    this.ctl = new BigInt64Array(ctl);
    this.sig = new Int32Array(sig);
    this.out = new Uint8Array(out);
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ring, ctl, sig, out } });
    this.worker.unref();
  }

  private consumed(): number {
    return Number(Atomics.load(this.ctl, 1));
  }

  private checkAlive(): void {
    if (Atomics.load(this.ctl, 2) === S_ERROR) throw new Error('sha256 worker failed');
  }

  /** Blocks until `done()` holds; the worker signals each step on sig[1]. */
  private waitFor(done: () => boolean): void {
    for (;;) {
      const seq = Atomics.load(this.sig, 1);
      if (done()) return;
      this.checkAlive();
      Atomics.wait(this.sig, 1, seq, 1000);
    }
  }

  slot(max: number): Buffer {
    const off = this.written % this.size;
    const n = Math.min(max, this.size - off);
    if (this.written + n - this.consumed() > this.size) this.waitFor(() => this.written + n - this.consumed() <= this.size);
    return this.rb.subarray(off, off + n);
  }

  commit(n: number): void {
    this.written += n;
    const committed = this.written - HOLD_BACK;
    if (committed > 0) {
      Atomics.store(this.ctl, 0, BigInt(committed));
      Atomics.add(this.sig, 0, 1);
      Atomics.notify(this.sig, 0);
    }
  }

  push(b: Uint8Array): void {
    let i = 0;
    while (i < b.length) {
      const view = this.slot(b.length - i);
      view.set(b.subarray(i, i + view.length));
      i += view.length;
      this.commit(view.length);
    }
  }

  finish(): ShaResult {
    const total = this.written;
    Atomics.store(this.ctl, 3, BigInt(total));
    Atomics.store(this.ctl, 2, S_FINISH);
    Atomics.add(this.sig, 0, 1);
    Atomics.notify(this.sig, 0);
    this.waitFor(() => Atomics.load(this.ctl, 2) === S_DONE);
    void this.worker.terminate();
    const tl = Math.min(HOLD_BACK, total);
    const tail = Buffer.alloc(tl);
    for (let i = 0; i < tl; i++) tail[i] = this.rb[(total - tl + i) % this.size]!;
    return { content: Buffer.from(this.out.subarray(0, 32)), all: Buffer.from(this.out.subarray(32, 64)), tail };
  }

  abort(): void {
    void this.worker.terminate();
  }
}

/** A sink hashing in a worker thread when `parallel` (and a worker can be started), else inline. */
export function openShaSink(parallel: boolean): ShaSink {
  if (parallel) {
    try {
      return new WorkerSha();
    } catch {
      // no worker threads here: hash inline
    }
  }
  return new InlineSha();
}
