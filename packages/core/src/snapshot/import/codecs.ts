/**
 * What a stream of bytes is, from its first bytes (magic numbers, never a file name), and the
 * streaming decoders for the compressions etcd backups come in. Every decoder holds at most one
 * input piece (16 KiB) and what it expands to; nothing is ever read whole into memory.
 */
import { constants, createGunzip, createInflate, createInflateRaw, gunzipSync, inflateSync, type Inflate } from 'node:zlib';
import { MAGIC, u32 } from '../verifier/bbolt-format.js';
import { ByteReader } from './byte-reader.js';
import { LzwDecoder, LzwError, lzwPrefix, parseCompressHeader } from './lzw.js';

export type Codec = 'gzip' | 'zlib' | 'compress' | 'lzw';

/** What the decoded content is. */
export type Content = 'bbolt' | 'tar' | 'zip' | 'unknown';

/** How many bytes sniffing looks at. */
export const SNIFF_BYTES = 64 * 1024;

export function isBbolt(h: Uint8Array): boolean {
  // Meta page 0: page flags 0x04 at offset 8, bbolt's magic at offset 16.
  if (h.length >= 20 && u32(h, 16) === MAGIC) return true;
  // Meta page 0 damaged (its page header still says "meta"): meta page 1 at a power-of-two page
  // size. The verifier then names the damage.
  if (h.length < 20 || h[8] !== 0x04 || isTar(h)) return false;
  for (let ps = 1024; ps <= 65536 && ps + 20 <= h.length; ps *= 2) if (u32(h, ps + 16) === MAGIC) return true;
  return false;
}

export function isTar(h: Uint8Array): boolean {
  return h.length >= 263 && Buffer.from(h.subarray(257, 262)).toString('latin1') === 'ustar';
}

export function isZip(h: Uint8Array): boolean {
  return h.length >= 4 && h[0] === 0x50 && h[1] === 0x4b && ((h[2] === 3 && h[3] === 4) || (h[2] === 5 && h[3] === 6));
}

export function contentOf(h: Uint8Array): Content {
  return isTar(h) ? 'tar' : isZip(h) ? 'zip' : isBbolt(h) ? 'bbolt' : 'unknown';
}

/** A zlib header (RFC 1950): deflate, window ≤ 32 KiB, check bits, no preset dictionary. */
function isZlibHeader(h: Uint8Array): boolean {
  return h.length >= 2 && (h[0]! & 0x0f) === 8 && h[0]! >> 4 <= 7 && ((h[0]! << 8) | h[1]!) % 31 === 0 && (h[1]! & 0x20) === 0;
}

/** The compression of a stream by its first bytes; Go's headerless LZW only when it decodes to something known. */
export function codecOf(h: Uint8Array): Codec | undefined {
  if (h.length >= 2 && h[0] === 0x1f && h[1] === 0x8b) return 'gzip';
  if (h.length >= 2 && h[0] === 0x1f && h[1] === 0x9d) return 'compress';
  if (isZlibHeader(h)) return 'zlib';
  // Go's LZW writer starts with a clear code (256 in 9 bits, LSB first): 0x00, then bit 0 set.
  if (h.length >= 2 && h[0] === 0x00 && (h[1]! & 1) === 1) {
    const p = lzwPrefix(h, 'go', 8192);
    if (p && contentOf(p) !== 'unknown') return 'lzw';
  }
  return undefined;
}

/** The first (up to) `max` decoded bytes of a compressed head; undefined when it does not decode. */
export function decodedHead(codec: Codec, h: Uint8Array, max = SNIFF_BYTES): Buffer | undefined {
  if (codec === 'compress' || codec === 'lzw') return lzwPrefix(h, codec === 'lzw' ? 'go' : 'compress', max);
  // A little input at first: a snapshot's zero-filled pages expand a thousandfold.
  let out: Buffer | undefined;
  for (const n of [1024, 8192, h.length]) {
    try {
      const opts = { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: 64 << 20 };
      const part = h.subarray(0, n);
      out = codec === 'gzip' ? gunzipSync(part, opts) : inflateSync(part, opts);
    } catch {
      return out;
    }
    if (out.length >= max || n >= h.length) break;
  }
  return out?.subarray(0, max);
}

export const codecName: Record<Codec, string> = {
  gzip: 'gzip',
  zlib: 'zlib',
  compress: 'Unix compress (.Z)',
  lzw: 'Go LZW',
};

/** A decoder failed: the compressed data is damaged or cut short. */
export class DecodeError extends Error {}

const PIECE = 16 * 1024;

/**
 * Inflates from `reader` (gzip, zlib, or raw deflate as in zip). With `exact`, stops where the
 * deflate stream ends and hands the bytes after it back to the reader (a zip's next header).
 * A stream that ends before the compressed data does is a DecodeError ("truncated").
 */
export async function* inflate(kind: 'gzip' | 'zlib' | 'raw', reader: ByteReader, opts: { exact?: boolean; what?: string } = {}): AsyncGenerator<Buffer> {
  const z: Inflate = (kind === 'gzip' ? createGunzip() : kind === 'zlib' ? createInflate() : createInflateRaw()) as Inflate;
  const out: Buffer[] = [];
  let ended = false;
  let error: Error | undefined;
  // Woken by a write's callback, or by an error or the end (after which a callback may never come).
  let wake: (() => void) | undefined;
  const settle = () => wake?.();
  z.on('data', (c: Buffer) => out.push(c));
  z.on('end', () => ((ended = true), settle()));
  z.on('error', (e: Error) => ((error = e), settle()));
  let fed = 0;
  let last: Buffer | undefined;
  let closing = false;
  try {
    for (;;) {
      while (out.length) yield out.shift()!;
      if (error) {
        const m = (error as NodeJS.ErrnoException).code === 'Z_BUF_ERROR' || /unexpected end/.test(error.message) ? 'truncated: the compressed data ends early' : error.message;
        throw new DecodeError(`${opts.what ?? kind}: ${m}`);
      }
      if (ended) break;
      if (closing) {
        await new Promise<void>((r) => ((wake = r), setImmediate(r)));
        continue;
      }
      const piece = await reader.readSome(PIECE);
      if (!piece.length) {
        closing = true;
        z.end();
        continue;
      }
      last = piece;
      fed += piece.length;
      await new Promise<void>((r) => {
        wake = r;
        z.write(piece, () => r());
      });
      await new Promise((r) => setImmediate(r));
    }
    if (opts.exact && last) {
      const surplus = fed - z.bytesWritten;
      if (surplus > 0) reader.unread(last.subarray(last.length - surplus));
    }
  } finally {
    z.destroy();
  }
}

/** Decodes LZW of either dialect from `reader`, in pieces. */
export async function* unlzw(dialect: 'go' | 'compress', reader: ByteReader, what: string): AsyncGenerator<Buffer> {
  if (dialect === 'compress') {
    const h = parseCompressHeader(await reader.peek(3));
    if (typeof h === 'string') throw new DecodeError(`${what}: ${h}`);
  }
  const d = new LzwDecoder(dialect);
  const out: Buffer[] = [];
  for (;;) {
    const piece = await reader.readSome(4096);
    if (!piece.length) break;
    try {
      d.push(piece, (b) => out.push(Buffer.from(b)));
    } catch (e) {
      throw new DecodeError(`${what}: ${e instanceof LzwError ? e.message : String(e)}`);
    }
    while (out.length) yield out.shift()!;
    if (d.ended) break;
  }
  if (dialect === 'go' && !d.ended) throw new DecodeError(`${what}: truncated: the LZW data ends without its end code`);
}

/** The decoded stream of `reader` for `codec`. */
export function decode(codec: Codec, reader: ByteReader, what: string): AsyncGenerator<Buffer> {
  if (codec === 'gzip' || codec === 'zlib') return inflate(codec, reader, { what: `${what} (${codec})` });
  return unlzw(codec === 'lzw' ? 'go' : 'compress', reader, `${what} (${codecName[codec]})`);
}
