import { asBuffer } from '../streams.js';
import type { OpenChunks, OpenChunksNow } from './age-native.js';
import { failure, openFinal, type PayloadOptions } from './age-open.js';
import { BATCH, CHUNK, ChunkOpener, SEALED } from './age-stream.js';

/**
 * Opening an age payload with the native opener (age-native.ts): up to BATCH chunks per call on
 * libuv's thread pool, while this thread hands the chunks opened before to the caller (the verifier).
 *
 * - Where the chunks lie: a large received piece (the bucket read's 1 MiB ones) is opened where it
 *   lies, no copy; the one chunk that spans two pieces is copied into a gathering buffer first and
 *   sent as the call's head; small pieces are gathered into whole batches.
 * - One call in flight while the caller works on what the one before opened: every call on a piece
 *   has settled before the next piece is asked for (the bucket read lends its pieces only until then;
 *   two in flight, with the bucket read holding each piece one piece longer, measured no faster on 2
 *   cores: docs/benchmarks.md).
 * - A call the pool has not started when it is waited for (its thread not scheduled: the other core
 *   busy) is claimed and opened on this thread instead of waiting idle (OpenChunks' `claim`).
 * - Every chunk sent has a byte after it (none is the final one); the final chunk and every failure
 *   are ChunkOpener's (age-open.ts): where the native opener stopped, it opens the rest one by one,
 *   words the failure, and a chunk it opens after all (the two disagree: never seen) is not lost.
 *
 * Memory, when the caller borrows: two output and two gathering buffers of ~1 MiB.
 */
/** A received piece this long or longer is opened where it lies; a shorter one is gathered first. */
const IN_PLACE = (BATCH / 2) * SEALED;
const NONE = Buffer.alloc(0);

interface Call {
  run: Promise<number>;
  /** Its claim cell (this call's own: a call claimed here may still be in the pool's queue). */
  claim: Int32Array | undefined;
  /** The gathered chunks sent first, and the piece's chunks after them. */
  head: Buffer;
  sealed: Buffer;
  heads: number;
  count: number;
  counter: number;
  out: Buffer;
  /** The gathering buffer it reads (or undefined). */
  gather: Buffer | undefined;
}

/** What is opened, in order, for the caller: a buffer, and the pooled output to free once it is read. */
interface Ready {
  buf: Buffer;
  pooled?: Buffer;
}

export async function* openNative(first: Buffer, rest: AsyncIterator<Uint8Array>, o: PayloadOptions, native: OpenChunks): AsyncGenerator<Buffer> {
  const now = o.nativeNow;
  const gathers: Buffer[] = []; // free gathering buffers
  const outs: Buffer[] = []; // free output buffers (borrowing caller)
  const newGather = () => gathers.pop() ?? Buffer.allocUnsafeSlow((BATCH + 1) * SEALED);
  let gather = newGather();
  let fill = 0;
  let counter = 0; // chunks sent
  const pending: Call[] = [];
  const ready: Ready[] = [];
  let failed: Error | undefined;

  /** Sends the `heads` gathered chunks, then `count` chunks of `piece` from `at`. */
  const send = (heads: number, piece: Buffer, at: number, count: number): void => {
    const n = heads + count;
    const out = o.borrow ? (outs.pop() ?? Buffer.allocUnsafeSlow(BATCH * CHUNK)) : Buffer.allocUnsafeSlow(n * CHUNK);
    const head = gather.subarray(0, heads * SEALED);
    const sealed = piece.subarray(at, at + count * SEALED);
    const claim = now ? new Int32Array(new ArrayBuffer(4)) : undefined;
    const run = native(o.key, counter, sealed, n, out, heads > 0 ? head : undefined, claim);
    run.catch(() => undefined); // settled below, or nobody waits any more (the reader stopped)
    pending.push({ run, claim, head, sealed, heads, count: n, counter, out, gather: heads > 0 ? gather : undefined });
    counter += n;
    if (heads > 0) {
      // The call reads this gathering buffer until it settles: gather on in another one.
      const next = newGather();
      fill = fill > heads * SEALED ? gather.copy(next, 0, heads * SEALED, fill) : 0;
      gather = next;
    }
  };

  /** Settles the oldest call: its plain bytes to `ready`, or the failure to `failed`. */
  const settle = async (): Promise<void> => {
    const c = pending.shift()!;
    let opened: number;
    if (c.claim && now && Atomics.compareExchange(c.claim, 0, 0, 1) === 0) {
      // The pool had not started it: this thread opens the batch rather than wait idle for it.
      opened = openHere(now, o.key, c.counter, c.sealed, c.count, c.out, c.heads > 0 ? c.head : undefined);
    } else {
      opened = await c.run.catch(() => 0); // the native call failed as a whole: this thread opens them all
    }
    if (c.gather) gathers.push(c.gather);
    if (failed) return;
    if (opened >= c.count) {
      ready.push({ buf: c.out.subarray(0, c.count * CHUNK), ...(o.borrow ? { pooled: c.out } : {}) });
      return;
    }
    if (opened > 0) ready.push({ buf: c.out.subarray(0, opened * CHUNK), ...(o.borrow ? { pooled: c.out } : {}) });
    else if (o.borrow) outs.push(c.out);
    const opener = new ChunkOpener(o.key, c.counter + opened);
    for (let i = opened; i < c.count; i++) {
      const chunk = i < c.heads ? c.head.subarray(i * SEALED, (i + 1) * SEALED) : c.sealed.subarray((i - c.heads) * SEALED, (i - c.heads + 1) * SEALED);
      const r = opener.next(chunk);
      if ('failure' in r) {
        failed = failure(r, false, o);
        return;
      }
      ready.push({ buf: r.plain });
    }
  };

  /** Hands on what is opened; a pooled output is free again once the caller asks for the next. */
  async function* handOn(): AsyncGenerator<Buffer> {
    while (ready.length) {
      const r = ready.shift()!;
      yield r.buf;
      if (r.pooled) outs.push(r.pooled);
    }
    if (failed) throw failed;
  }

  /** After a send: one call in flight; the caller works on what the older ones opened. */
  async function* bounded(): AsyncGenerator<Buffer> {
    while (pending.length > 1) await settle();
    yield* handOn();
  }

  let piece = first;
  for (;;) {
    let at = 0;
    if (piece.length >= IN_PLACE) {
      // Complete the chunk the gathered bytes end in, then send: the gathered chunks with the piece's first ones.
      const part = fill % SEALED;
      if (part > 0) {
        at = SEALED - part;
        piece.copy(gather, fill, 0, at);
        fill += at;
      }
      for (;;) {
        const heads = fill / SEALED;
        const count = Math.max(0, Math.min(BATCH - heads, Math.floor((piece.length - at - 1) / SEALED)));
        if (heads + count === 0 || (count === 0 && at === piece.length)) break;
        send(heads, piece, at, count);
        at += count * SEALED;
        yield* bounded();
      }
    }
    // What is left: at most one chunk of a large piece, or a small piece whole (sent batch by batch).
    while (at < piece.length) {
      const n = Math.min(piece.length - at, gather.length - fill);
      piece.copy(gather, fill, at, at + n);
      fill += n;
      at += n;
      if (fill > BATCH * SEALED) {
        send(BATCH, NONE, 0, 0);
        yield* bounded();
      }
    }
    // Asking for the next piece ends this one's: the calls that read it settle first. What they
    // opened is handed on only after the next piece's first call is sent, so that one runs meanwhile.
    while (pending.length) await settle();
    if (failed) break;
    const next = await rest.next();
    if (next.done) break;
    piece = asBuffer(next.value);
  }
  if (!failed) {
    // The gathered whole chunks before the last one, then the last one: the final chunk.
    const whole = fill > 0 ? Math.floor((fill - 1) / SEALED) : 0;
    if (whole > 0) send(whole, NONE, 0, 0); // the last chunk moves to the start of a new gathering buffer
    const last = gather.subarray(0, fill);
    while (pending.length) await settle();
    if (!failed) {
      try {
        ready.push({ buf: openFinal(last, counter, o) });
      } catch (e) {
        failed = e as Error;
      }
    }
  }
  yield* handOn();
}

function openHere(now: OpenChunksNow, ...a: Parameters<OpenChunksNow>): number {
  try {
    return now(...a);
  } catch {
    return 0; // ChunkOpener opens them all
  }
}
