import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { CHUNK, ChunkSealer, SEALED } from './age-stream.js';

/**
 * The native age module (packages/core/native/age_open.c, built by scripts/build-native.mjs): many
 * 64 KiB chunks of an age payload sealed or opened in one call, on libuv's thread pool, into a buffer
 * the caller owns, with the OpenSSL the running Node.js carries. With it the cipher runs beside the
 * verifier, the snapshot stream and the upload (on the second core) instead of in series with them on
 * this thread: docs/benchmarks.md, "Encryption (age)".
 *
 * It is a speed path only. It seals and opens the non-final chunks; the TypeScript ChunkSealer and
 * ChunkOpener do the final one, and ChunkOpener decides and words every failure (age-payload.ts
 * re-opens a chunk the module would not open). Where the module cannot be loaded, or does not pass
 * its self-test, the in-thread path runs: the same bytes and the same errors, slower.
 */
/**
 * Opens `count` non-final chunks (65552 bytes each) into `out`; settles with how many opened, in order.
 * With `head` (whole sealed chunks, h of them), the first h are head's and the other count - h sealed's.
 * With `claim` (a fresh Int32Array of its own ArrayBuffer), the pool thread opens them only if it
 * claims the job first (claim[0]: 0 to 1, atomically); the caller that claims it instead opens them
 * with OpenChunksNow, and the promise settles with -1.
 */
export type OpenChunks = (key: Buffer, firstCounter: number, sealed: Buffer, count: number, out: Buffer, head?: Buffer, claim?: Int32Array) => Promise<number>;
/** OpenChunks on the calling thread: returns how many opened. */
export type OpenChunksNow = (key: Buffer, firstCounter: number, sealed: Buffer, count: number, out: Buffer, head?: Buffer) => number;
/** Seals `count` non-final chunks (65536 bytes each) into `out` (ciphertext and tag each); settles with count. */
export type SealChunks = (key: Buffer, firstCounter: number, plain: Buffer, count: number, out: Buffer) => Promise<number>;
export interface NativeAge {
  open: OpenChunks;
  seal: SealChunks;
  /** Absent from a module that does not have it (or did not pass its self-test): no claiming. */
  openNow?: OpenChunksNow | undefined;
}

/** Where the module is when core runs from its folder (dist/ or src/ under tsx): native/build/. */
function loadFromPackage(): unknown {
  const file = fileURLToPath(new URL('../../native/build/age_open.node', import.meta.url));
  return createRequire(import.meta.url)(file);
}

let loader: (() => unknown) | null | undefined;
let resolved: Promise<NativeAge | undefined> | undefined;

/**
 * How the module is found where core is not in its folder (the bundle in the agent image, the single
 * executable: packages/kubectl-plugin/src/native-assets.ts). `null`: never use it (tests of the
 * in-thread path, comparisons); `undefined`: back to the package's own folder.
 */
export function setAgeOpenLoader(l: (() => unknown) | null | undefined): void {
  loader = l;
  resolved = undefined;
}

/** The module, loaded and self-tested once per process; undefined: the in-thread path. */
export function nativeAge(): Promise<NativeAge | undefined> {
  resolved ??= resolve();
  return resolved;
}

async function resolve(): Promise<NativeAge | undefined> {
  if (loader === null) return undefined;
  for (const load of loader ? [loader, loadFromPackage] : [loadFromPackage]) {
    try {
      const m = load() as { openChunks?: unknown; sealChunks?: unknown; openChunksNow?: unknown } | undefined;
      if (typeof m?.openChunks !== 'function' || typeof m.sealChunks !== 'function') continue;
      const age: NativeAge = { open: m.openChunks as OpenChunks, seal: m.sealChunks as SealChunks };
      if (!(await selfTest(age))) continue;
      if (typeof m.openChunksNow === 'function' && (await claimTest(age, m.openChunksNow as OpenChunksNow))) age.openNow = m.openChunksNow as OpenChunksNow;
      return age;
    } catch {
      /* not there, or not loadable here: the next place, else the in-thread path */
    }
  }
  return undefined;
}

/**
 * Three chunks with a counter past 2^32: sealed natively to ChunkSealer's bytes, opened back to the
 * plain ones (also with the first one given apart, as a head), and one flipped bit stops the opened
 * count at its chunk.
 */
async function selfTest(age: NativeAge): Promise<boolean> {
  const key = randomBytes(32);
  const first = 2 ** 32 + 5;
  const plain = randomBytes(3 * CHUNK);
  const sealer = new ChunkSealer(key, first);
  const sealed = Buffer.concat([0, 1, 2].flatMap((i) => sealer.seal(false, plain.subarray(i * CHUNK, (i + 1) * CHUNK))));
  const mine = Buffer.alloc(3 * SEALED);
  if ((await age.seal(key, first, plain, 3, mine)) !== 3 || !mine.equals(sealed)) return false;
  const out = Buffer.alloc(3 * CHUNK);
  if ((await age.open(key, first, sealed, 3, out)) !== 3 || !out.equals(plain)) return false;
  out.fill(0);
  if ((await age.open(key, first, sealed.subarray(SEALED), 3, out, sealed.subarray(0, SEALED))) !== 3 || !out.equals(plain)) return false;
  sealed[SEALED + 7]! ^= 1;
  if ((await age.open(key, first, sealed, 3, out)) !== 1) return false;
  return (await age.open(key, first, sealed.subarray(2 * SEALED), 3, out, sealed.subarray(0, 2 * SEALED))) === 1;
}

/**
 * The claim: a job the caller claimed first is not run by the pool (settles with -1, `out` untouched),
 * one it did not is; and openChunksNow opens on this thread as openChunks does (a flipped bit too).
 */
async function claimTest(age: NativeAge, now: OpenChunksNow): Promise<boolean> {
  const key = randomBytes(32);
  const plain = randomBytes(2 * CHUNK);
  const sealer = new ChunkSealer(key, 7);
  const sealed = Buffer.concat([0, 1].flatMap((i) => sealer.seal(false, plain.subarray(i * CHUNK, (i + 1) * CHUNK))));
  const out = Buffer.alloc(2 * CHUNK);
  const taken = new Int32Array(new ArrayBuffer(4));
  taken[0] = 1;
  if ((await age.open(key, 7, sealed, 2, out, undefined, taken)) !== -1 || out.some((b) => b !== 0)) return false;
  const free = new Int32Array(new ArrayBuffer(4));
  if ((await age.open(key, 7, sealed.subarray(SEALED), 2, out, sealed.subarray(0, SEALED), free)) !== 2 || !out.equals(plain) || free[0] !== 1) return false;
  out.fill(0);
  if (now(key, 7, sealed.subarray(SEALED), 2, out, sealed.subarray(0, SEALED)) !== 2 || !out.equals(plain)) return false;
  sealed[SEALED + 3]! ^= 1;
  return now(key, 7, sealed, 2, out) === 1;
}
