import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, type KeyObject } from 'node:crypto';

/**
 * The payload of an age file: the STREAM construction of age-encryption.org/v1 — 64 KiB chunks, each
 * sealed with ChaCha20-Poly1305 under a key derived from the file key and a 16-byte nonce, the chunk
 * counter in the nonce and the last chunk flagged. encryption.ts makes and opens the header; this
 * module seals and opens the chunks, with Node's native cipher.
 *
 * Memory is one chunk: a chunk lying whole in the caller's buffer is opened where it lies.
 */
export const CHUNK = 64 * 1024;
export const TAG = 16;
export const SEALED = CHUNK + TAG;
/** Chunks per call of the native module (age-native.ts): 1 MiB of plain bytes. */
export const BATCH = 16;

/** The payload key, imported once per file (a raw key per chunk costs OpenSSL a key import each time). */
export function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
}

function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6); // the 11-byte big-endian counter: 2^48 chunks are 16 EiB, plenty
  n[11] = last ? 1 : 0;
  return n;
}

/** Seals a stream's chunks for one payload key; yields ciphertext and tag as two pieces (no copy). */
export class ChunkSealer {
  readonly #key: KeyObject;
  #counter: number;

  /** `counter`: the place of the first chunk this sealer is given (0: the payload's start). */
  constructor(key: Buffer, counter = 0) {
    this.#key = createSecretKey(key);
    this.#counter = counter;
  }

  seal(last: boolean, plain: Uint8Array): [Buffer, Buffer] {
    const c = createCipheriv('chacha20-poly1305', this.#key, chunkNonce(this.#counter++, last), { authTagLength: TAG });
    const body = c.update(plain);
    c.final();
    return [body, c.getAuthTag()];
  }
}

/** Why a chunk did not open (the caller words the message). */
export type OpenFailure = 'tampered' | 'after-final' | 'final-missing';

/** One opened chunk, or why it failed; `counter` is its place in the payload. */
export type Opened = { plain: Buffer; counter: number } | { failure: OpenFailure; counter: number };

/**
 * Opens a payload's chunks in order, in this thread. `next` takes a sealed chunk known to be followed
 * by more bytes (so not the last one), `final` the last one (only its tag, for an empty file). The
 * sealed bytes are only read during the call: the caller may reuse their buffer afterwards.
 *
 * (Web Crypto's ChaCha20-Poly1305 on libuv's thread pool, Node.js ≥ 24.7, was measured instead: per
 * 64 KiB chunk it cost this thread more than the decryption here — docs/benchmarks.md: Encryption.)
 */
export class ChunkOpener {
  readonly #key: KeyObject;
  #counter: number;

  /** `counter`: the place of the first chunk this opener is given (0: the payload's start). */
  constructor(key: Buffer, counter = 0) {
    this.#key = createSecretKey(key);
    this.#counter = counter;
  }

  get count(): number {
    return this.#counter;
  }

  #open(counter: number, last: boolean, sealed: Uint8Array): Buffer | undefined {
    const d = createDecipheriv('chacha20-poly1305', this.#key, chunkNonce(counter, last), { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    const body = d.update(sealed.subarray(0, sealed.length - TAG));
    try {
      d.final();
    } catch {
      return undefined;
    }
    return body;
  }

  next(sealed: Uint8Array): Opened {
    const counter = this.#counter++;
    const plain = this.#open(counter, false, sealed);
    return plain ? { plain, counter } : { failure: this.#open(counter, true, sealed) ? 'after-final' : 'tampered', counter };
  }

  final(sealed: Uint8Array): Opened {
    const counter = this.#counter++;
    const plain = this.#open(counter, true, sealed);
    return plain ? { plain, counter } : { failure: sealed.length === SEALED && this.#open(counter, false, sealed) ? 'final-missing' : 'tampered', counter };
  }
}
