import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { CHUNK, ChunkSealer, SEALED } from './age-stream.js';

/**
 * The native age opener (packages/core/native/age_open.c, built by scripts/build-native.mjs): many
 * 64 KiB chunks of an age payload opened in one call, on libuv's thread pool, into a buffer the caller
 * owns, with the OpenSSL the running Node.js carries. With it the decryption runs beside the verifier
 * (on the second core) instead of in series with it on this thread: docs/benchmarks.md, "Encryption".
 *
 * It is a speed path only. It opens the non-final chunks; the TypeScript ChunkOpener opens the final
 * one and is what decides and words every failure (age-payload.ts re-opens a chunk the module would
 * not open). Where the module cannot be loaded, or does not pass its self-test, the in-thread path
 * runs: the same bytes and the same errors, slower.
 */
export type OpenChunks = (key: Buffer, firstCounter: number, sealed: Buffer, count: number, out: Buffer) => Promise<number>;

/** Where the module is when core runs from its folder (dist/ or src/ under tsx): native/build/. */
function loadFromPackage(): unknown {
  const file = fileURLToPath(new URL('../../native/build/age_open.node', import.meta.url));
  return createRequire(import.meta.url)(file);
}

let loader: (() => unknown) | null | undefined;
let resolved: Promise<OpenChunks | undefined> | undefined;

/**
 * How the module is found where core is not in its folder (the bundle in the agent image, the single
 * executable: packages/kubectl-plugin/src/native-assets.ts). `null`: never use it (tests of the
 * in-thread path, comparisons); `undefined`: back to the package's own folder.
 */
export function setAgeOpenLoader(l: (() => unknown) | null | undefined): void {
  loader = l;
  resolved = undefined;
}

/** The module's openChunks, loaded and self-tested once per process; undefined: the in-thread path. */
export function nativeOpenChunks(): Promise<OpenChunks | undefined> {
  resolved ??= resolve();
  return resolved;
}

async function resolve(): Promise<OpenChunks | undefined> {
  if (loader === null) return undefined;
  for (const load of loader ? [loader, loadFromPackage] : [loadFromPackage]) {
    try {
      const fn = (load() as { openChunks?: unknown } | undefined)?.openChunks;
      if (typeof fn === 'function' && (await selfTest(fn as OpenChunks))) return fn as OpenChunks;
    } catch {
      /* not there, or not loadable here: the next place, else the in-thread path */
    }
  }
  return undefined;
}

/** Three chunks sealed here: all open to the same bytes, and one with a flipped bit stops the count at it. */
async function selfTest(open: OpenChunks): Promise<boolean> {
  const key = randomBytes(32);
  const plain = randomBytes(3 * CHUNK);
  const sealer = new ChunkSealer(key);
  const sealed = Buffer.concat([0, 1, 2].flatMap((i) => sealer.seal(false, plain.subarray(i * CHUNK, (i + 1) * CHUNK))));
  const out = Buffer.alloc(3 * CHUNK);
  if ((await open(key, 0, sealed, 3, out)) !== 3 || !out.equals(plain)) return false;
  sealed[SEALED + 7]! ^= 1;
  return (await open(key, 0, sealed, 3, out)) === 1;
}
