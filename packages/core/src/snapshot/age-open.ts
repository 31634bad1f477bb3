import { asBuffer } from '../streams.js';
import type { OpenChunks, OpenChunksNow } from './age-native.js';
import { ChunkOpener, SEALED, TAG, type Opened } from './age-stream.js';

/**
 * Opening an age payload (the chunks after the header and its 16-byte nonce): what both ways share
 * (the options, every failure's words, the final chunk) and the in-thread way. The batched way, with
 * the native opener, is age-open-native.ts; age-payload.ts chooses between them.
 *
 * A chunk is opened as "not last" only once more bytes follow it. The input may be borrowed (a piece
 * reused once the next one is asked for): nothing of it is kept across that. Every failure is decided
 * and worded by ChunkOpener, in both ways (the native opener only says how many chunks opened).
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
  /** The native opener on this thread, for a batch the pool has not started when it is waited for. */
  nativeNow?: OpenChunksNow | undefined;
}

/** The error for a chunk that did not open (its place: counter). */
export function failure(r: Exclude<Opened, { plain: Buffer }>, final: boolean, o: PayloadOptions): Error {
  const at = o.payloadAt + r.counter * SEALED;
  if (r.failure === 'after-final') return o.corrupt(`has data after its final chunk (byte ${at + SEALED})`);
  if (r.failure === 'final-missing') return o.corrupt(`is truncated: it ends after chunk ${r.counter + 1} without the final chunk (byte ${at + SEALED})`);
  return final
    ? o.corrupt(`failed authentication in its final chunk at byte ${at} (truncated, bit flip or tampering)`)
    : o.corrupt(`failed authentication in the chunk at byte ${at} (bit flip or tampering)`);
}

/** The final chunk (`tail`: its bytes, at place `counter`). */
export function openFinal(tail: Buffer, counter: number, o: PayloadOptions): Buffer {
  if (tail.length < TAG) throw o.corrupt(`is truncated: it ends ${tail.length} byte(s) into a chunk at byte ${o.payloadAt + counter * SEALED}`);
  const r = new ChunkOpener(o.key, counter).final(tail);
  if ('failure' in r) throw failure(r, true, o);
  if (r.plain.length === 0 && counter > 0) throw o.corrupt('ends with an empty final chunk, which age forbids');
  return r.plain;
}

export async function* openInThread(first: Buffer, rest: AsyncIterator<Uint8Array>, o: PayloadOptions): AsyncGenerator<Buffer> {
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
