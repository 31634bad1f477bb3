import { asBuffer } from '../streams.js';
import type { OpenChunks, SealChunks } from './age-native.js';
import { CHUNK, ChunkOpener, ChunkSealer, SEALED, TAG, type Opened } from './age-stream.js';

/**
 * The payload of an age file (the chunks after the header and its 16-byte nonce), sealed and opened
 * as it streams. Opening has two ways, the same bytes and the same errors:
 *
 * - batched, with the native opener (age-native.ts): the sealed chunks are gathered into 1 MiB
 *   batches; while the newest DEPTH batches are opened on libuv's thread pool, this thread hands the
 *   oldest to the caller (the verifier) and reads the next from the bucket. DEPTH + 1 input and, when
 *   the caller borrows, DEPTH + 1 output buffers are reused: ~6 MiB in all.
 * - in-thread (ChunkOpener): each chunk opened when it has arrived, where it lies in the received
 *   piece when it lies there whole; one 64 KiB staging buffer.
 *
 * A chunk is opened as "not last" only once more bytes follow it. The input may be borrowed (reused
 * once the next piece is asked for): nothing of it is kept across that. Every failure is decided and
 * worded by ChunkOpener, also in the batched way (the native opener only says how many chunks opened).
 */
export interface PayloadOptions {
  /** The payload key (from the file key and the payload nonce). */
  key: Buffer;
  /** The object's byte offset of the first chunk, for messages. */
  payloadAt: number;
  corrupt: (why: string) => Error;
  /** The caller is done with each yielded buffer when it asks for the next one: outputs are reused. */
  borrow?: boolean;
  /** The native opener; undefined: the in-thread way. */
  native?: OpenChunks | undefined;
}

/** Chunks per native call: 1 MiB of plain bytes. */
export const BATCH = 16;
/** Batches in flight at once (1 to 3 measured within each other's noise on 2 cores; 2 waits least). */
export const DEPTH = 2;

export function openPayload(first: Buffer, rest: AsyncIterator<Uint8Array>, o: PayloadOptions): AsyncGenerator<Buffer> {
  return o.native ? batched(first, rest, o, o.native) : inThread(first, rest, o);
}

/** The error for a chunk that did not open (its place: counter). */
function failure(r: Exclude<Opened, { plain: Buffer }>, final: boolean, o: PayloadOptions): Error {
  const at = o.payloadAt + r.counter * SEALED;
  if (r.failure === 'after-final') return o.corrupt(`has data after its final chunk (byte ${at + SEALED})`);
  if (r.failure === 'final-missing') return o.corrupt(`is truncated: it ends after chunk ${r.counter + 1} without the final chunk (byte ${at + SEALED})`);
  return final
    ? o.corrupt(`failed authentication in its final chunk at byte ${at} (truncated, bit flip or tampering)`)
    : o.corrupt(`failed authentication in the chunk at byte ${at} (bit flip or tampering)`);
}

/** The final chunk (`tail`: its bytes, at place `counter`). */
function openFinal(tail: Buffer, counter: number, o: PayloadOptions): Buffer {
  if (tail.length < TAG) throw o.corrupt(`is truncated: it ends ${tail.length} byte(s) into a chunk at byte ${o.payloadAt + counter * SEALED}`);
  const r = new ChunkOpener(o.key, counter).final(tail);
  if ('failure' in r) throw failure(r, true, o);
  if (r.plain.length === 0 && counter > 0) throw o.corrupt('ends with an empty final chunk, which age forbids');
  return r.plain;
}

async function* inThread(first: Buffer, rest: AsyncIterator<Uint8Array>, o: PayloadOptions): AsyncGenerator<Buffer> {
  const opener = new ChunkOpener(o.key);
  const next = (sealed: Buffer): Buffer => {
    const r = opener.next(sealed);
    if ('failure' in r) throw failure(r, false, o);
    return r.plain;
  };
  // A chunk that does not lie whole inside one piece, or ends it, is gathered in `stage` first.
  const stage = Buffer.allocUnsafe(SEALED);
  let fill = 0;
  let piece = first;
  for (;;) {
    let at = 0;
    if (fill > 0 && fill < SEALED) {
      const n = Math.min(SEALED - fill, piece.length);
      piece.copy(stage, fill, 0, n);
      fill += n;
      at = n;
    }
    if (fill === SEALED && at < piece.length) {
      yield next(stage);
      fill = 0;
    }
    // Whole chunks inside the piece with more bytes after them: opened where they lie.
    while (piece.length - at > SEALED) {
      yield next(piece.subarray(at, at + SEALED));
      at += SEALED;
    }
    if (at < piece.length) {
      piece.copy(stage, fill, at);
      fill += piece.length - at;
    }
    const n = await rest.next();
    if (n.done) break;
    piece = asBuffer(n.value);
  }
  yield openFinal(stage.subarray(0, fill), opener.count, o);
}

interface Batch {
  /** Settles with the number of chunks done, in order. */
  run: Promise<number>;
  /** The batch's input (sealed chunks to open, or plain ones to seal), and where the module writes. */
  input: Buffer;
  out: Buffer;
  counter: number;
  count: number;
}

/**
 * The stream gathered into batches of BATCH whole units (`unit` bytes: a sealed or a plain chunk),
 * a batch sent only once a byte beyond it has arrived, so none of its units is the final one. While
 * the newest DEPTH batches are worked on, the oldest is settled (handed on), and only then is its
 * input buffer filled again: DEPTH + 1 input buffers in all. At the end, the whole units before the last one are sent,
 * and the last one (1 to `unit` bytes; none: an empty stream) is returned with its counter.
 */
async function* inBatches(
  pieces: AsyncIterable<Uint8Array>,
  unit: number,
  send: (input: Buffer, counter: number, count: number) => Batch,
  settle: (b: Batch) => AsyncGenerator<Buffer>,
): AsyncGenerator<Buffer, { last: Buffer; counter: number }> {
  const cap = (BATCH + 1) * unit;
  // Made on first use: a small payload (one batch or less) needs one.
  const buffers: Buffer[] = [];
  const ins = (k: number): Buffer => (buffers[k] ??= Buffer.allocUnsafeSlow(cap));
  let j = 0; // batches sent; batch j is gathered in ins[j % (DEPTH + 1)]
  let counter = 0; // units sent
  let fill = 0;
  const go = (count: number): Batch => {
    const b = send(ins(j % (DEPTH + 1)), counter, count);
    b.run.catch(() => undefined); // a batch nobody waits for any more (the reader stopped) settles quietly
    j++;
    counter += count;
    return b;
  };
  const pending: Batch[] = [];
  for await (const v of pieces) {
    const piece = asBuffer(v);
    for (let at = 0; at < piece.length; ) {
      const n = Math.min(piece.length - at, cap - fill);
      piece.copy(ins(j % (DEPTH + 1)), fill, at, at + n);
      fill += n;
      at += n;
      if (fill > BATCH * unit) {
        const sent = go(BATCH);
        pending.push(sent);
        // The oldest batches are handed on while the newer ones are worked on; the next input buffer
        // is the oldest one's, free once it is settled.
        while (pending.length > DEPTH) yield* settle(pending.shift()!);
        fill -= BATCH * unit;
        sent.input.copy(ins(j % (DEPTH + 1)), 0, BATCH * unit, BATCH * unit + fill);
      }
    }
  }
  while (pending.length) yield* settle(pending.shift()!);
  const whole = fill > 0 ? Math.floor((fill - 1) / unit) : 0;
  const last = ins(j % (DEPTH + 1)).subarray(whole * unit, fill);
  if (whole > 0) yield* settle(go(whole));
  return { last, counter };
}

async function* chain(first: Buffer, rest: AsyncIterator<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield first;
  for (;;) {
    const n = await rest.next();
    if (n.done) return;
    yield n.value;
  }
}

async function* batched(first: Buffer, rest: AsyncIterator<Uint8Array>, o: PayloadOptions, native: OpenChunks): AsyncGenerator<Buffer> {
  // Borrowed: batch j opens into outs[j % (DEPTH + 1)], batch j - DEPTH - 1's, which the caller is done with by then.
  const outs: Buffer[] = [];
  let j = 0;
  const send = (input: Buffer, counter: number, count: number): Batch => {
    const out = o.borrow ? (outs[j++ % (DEPTH + 1)] ??= Buffer.allocUnsafeSlow(BATCH * CHUNK)) : Buffer.allocUnsafeSlow(count * CHUNK);
    return { run: native(o.key, counter, input, count, out), input, out, counter, count };
  };
  const { last, counter } = yield* inBatches(chain(first, rest), SEALED, send, (b) => openedBatch(b, o));
  yield openFinal(last, counter, o);
}

/**
 * A batch's plain bytes. Where the native opener stopped, ChunkOpener opens the rest of the batch
 * one by one: it words the failure, and a chunk it opens after all (the two disagree: never seen) is
 * not lost.
 */
async function* openedBatch(b: Batch, o: PayloadOptions): AsyncGenerator<Buffer> {
  let opened: number;
  try {
    opened = await b.run;
  } catch {
    opened = 0; // the native call failed as a whole: open the batch in this thread
  }
  if (opened >= b.count) {
    yield b.out.length === b.count * CHUNK ? b.out : b.out.subarray(0, b.count * CHUNK);
    return;
  }
  if (opened > 0) yield b.out.subarray(0, opened * CHUNK);
  const opener = new ChunkOpener(o.key, b.counter + opened);
  for (let i = opened; i < b.count; i++) {
    const r = opener.next(b.input.subarray(i * SEALED, (i + 1) * SEALED));
    if ('failure' in r) throw failure(r, false, o);
    yield r.plain;
  }
}

/**
 * Seals a payload as it streams in, yielding the sealed bytes (each buffer the caller's to keep). With
 * the native module, in 1 MiB batches on the thread pool while this thread reads the next one (and the
 * caller uploads the previous one); else chunk by chunk in this thread. The final chunk is sealed here.
 */
export async function* sealPayload(plain: AsyncIterable<Uint8Array>, key: Buffer, native: SealChunks | undefined): AsyncGenerator<Buffer> {
  if (!native) {
    yield* sealInThread(plain, key);
    return;
  }
  const send = (input: Buffer, counter: number, count: number): Batch => {
    const out = Buffer.allocUnsafeSlow(count * SEALED);
    return { run: native(key, counter, input, count, out), input, out, counter, count };
  };
  async function* settle(b: Batch): AsyncGenerator<Buffer> {
    if ((await b.run.catch(() => 0)) === b.count) {
      yield b.out;
      return;
    }
    // The module did not seal them all (never seen): this thread seals the batch.
    const s = new ChunkSealer(key, b.counter);
    for (let i = 0; i < b.count; i++) yield* s.seal(false, b.input.subarray(i * CHUNK, (i + 1) * CHUNK));
  }
  const { last, counter } = yield* inBatches(plain, CHUNK, send, settle);
  yield* new ChunkSealer(key, counter).seal(true, last);
}

async function* sealInThread(plain: AsyncIterable<Uint8Array>, key: Buffer): AsyncGenerator<Buffer> {
  const sealer = new ChunkSealer(key);
  const buf = Buffer.alloc(CHUNK);
  let fill = 0;
  for await (const piece of plain) {
    let at = 0;
    while (at < piece.length) {
      if (fill === CHUNK) {
        // More data follows a full chunk, so that chunk is not the last one.
        yield* sealer.seal(false, buf);
        fill = 0;
      }
      const n = Math.min(CHUNK - fill, piece.length - at);
      buf.set(piece.subarray(at, at + n), fill);
      fill += n;
      at += n;
    }
  }
  yield* sealer.seal(true, buf.subarray(0, fill));
}
