import { asBuffer } from '../streams.js';
import type { SealChunks } from './age-native.js';
import { openInThread, type PayloadOptions } from './age-open.js';
import { openNative } from './age-open-native.js';
import { BATCH, CHUNK, ChunkSealer, SEALED } from './age-stream.js';

/**
 * The payload of an age file (the chunks after the header and its 16-byte nonce), sealed and opened
 * as it streams. Opening has two ways, the same bytes and the same errors:
 *
 * - batched, with the native opener (age-open-native.ts): up to BATCH chunks per call on libuv's
 *   thread pool, opened where they lie in the pieces received, beside the caller (the verifier);
 * - in-thread (age-open.ts, ChunkOpener): each chunk opened when it has arrived, where it lies in the
 *   received piece when it lies there whole; one 64 KiB staging buffer.
 *
 * Sealing (here) has the same two ways: batches of BATCH plain chunks sealed on the thread pool while
 * this thread reads the next, or chunk by chunk in this thread.
 */
export type { PayloadOptions } from './age-open.js';

/** Sealing: batches in flight at once (1 to 3 measured within each other's noise on 2 cores; 2 waits least). */
export const DEPTH = 2;

export function openPayload(first: Buffer, rest: AsyncIterator<Uint8Array>, o: PayloadOptions): AsyncGenerator<Buffer> {
  return o.native ? openNative(first, rest, o, o.native) : openInThread(first, rest, o);
}

interface Batch {
  /** Settles with the number of chunks done, in order. */
  run: Promise<number>;
  /** The batch's input (plain chunks to seal), and where the module writes. */
  input: Buffer;
  out: Buffer;
  counter: number;
  count: number;
}

/**
 * Sealing: the plain stream gathered into batches of BATCH whole chunks, a batch sent only once a
 * byte beyond it has arrived, so none of its chunks is the final one. While
 * the newest DEPTH batches are worked on, the oldest is settled (handed on), and only then is its
 * input buffer filled again: DEPTH + 1 input buffers in all. At the end, the whole chunks before the
 * last one are sent, and the last one (1 to CHUNK bytes; none: an empty stream) is returned with its counter.
 */
async function* inBatches(
  pieces: AsyncIterable<Uint8Array>,
  send: (input: Buffer, counter: number, count: number) => Batch,
  settle: (b: Batch) => AsyncGenerator<Buffer>,
): AsyncGenerator<Buffer, { last: Buffer; counter: number }> {
  const cap = (BATCH + 1) * CHUNK;
  // Made on first use: a small payload (one batch or less) needs one.
  const buffers: Buffer[] = [];
  const ins = (k: number): Buffer => (buffers[k] ??= Buffer.allocUnsafeSlow(cap));
  let j = 0; // batches sent; batch j is gathered in ins[j % (DEPTH + 1)]
  let counter = 0; // chunks sent
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
      if (fill > BATCH * CHUNK) {
        const sent = go(BATCH);
        pending.push(sent);
        // The oldest batches are handed on while the newer ones are worked on; the next input buffer
        // is the oldest one's, free once it is settled.
        while (pending.length > DEPTH) yield* settle(pending.shift()!);
        fill -= BATCH * CHUNK;
        sent.input.copy(ins(j % (DEPTH + 1)), 0, BATCH * CHUNK, BATCH * CHUNK + fill);
      }
    }
  }
  while (pending.length) yield* settle(pending.shift()!);
  const whole = fill > 0 ? Math.floor((fill - 1) / CHUNK) : 0;
  const last = ins(j % (DEPTH + 1)).subarray(whole * CHUNK, fill);
  if (whole > 0) yield* settle(go(whole));
  return { last, counter };
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
  const { last, counter } = yield* inBatches(plain, send, settle);
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
