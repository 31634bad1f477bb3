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
/** Opens `count` non-final chunks (65552 bytes each) into `out`; settles with how many opened, in order. */
export type OpenChunks = (key: Buffer, firstCounter: number, sealed: Buffer, count: number, out: Buffer) => Promise<number>;
/** Seals `count` non-final chunks (65536 bytes each) into `out` (ciphertext and tag each); settles with count. */
export type SealChunks = (key: Buffer, firstCounter: number, plain: Buffer, count: number, out: Buffer) => Promise<number>;
export interface NativeAge {
  open: OpenChunks;
  seal: SealChunks;
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
      const m = load() as { openChunks?: unknown; sealChunks?: unknown } | undefined;
      if (typeof m?.openChunks !== 'function' || typeof m.sealChunks !== 'function') continue;
      const age = { open: m.openChunks as OpenChunks, seal: m.sealChunks as SealChunks };
      if (await selfTest(age)) return age;
    } catch {
      /* not there, or not loadable here: the next place, else the in-thread path */
    }
  }
  return undefined;
}

/**
 * Three chunks with a counter past 2^32: sealed natively to ChunkSealer's bytes, opened back to the
 * plain ones, and one flipped bit stops the opened count at its chunk.
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
  sealed[SEALED + 7]! ^= 1;
  return (await age.open(key, first, sealed, 3, out)) === 1;
}
