import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setAgeOpenLoader, setCrc32cLoader } from '@etcd-recover/core';

/**
 * The native speed-ups where core is not in its package folder. Each is optional: anything that fails
 * leaves its JS path (the same results, slower), and core checks what it is given before using it.
 *
 * - The CRC-32C binding (@node-rs/crc32; without it the JS CRC-32C costs ~1 s per GiB on every backup
 *   and verify: the keyspace hash and the upload's checksums).
 * - The age opener (packages/core/native/age_open.c, scripts/build-native.mjs: an encrypted backup's
 *   chunks opened on the thread pool, beside the verifier).
 *
 * The single executable cannot `require` a file, so both travel in it as SEA assets
 * (scripts/release-binary.mjs) and are loaded the only way Node loads a native addon, from a file: on
 * first use each is written to a folder only this user can write (the cache folder, else a 0700
 * folder of this uid in the temp folder) under its own sha256, checked against the asset before every
 * load, and opened with process.dlopen. The bundle in the agent image finds the age opener in
 * `native/` beside it (docker/agent.Dockerfile).
 */
export const CRC_ASSET = 'crc32c.node';
export const AGE_OPEN_ASSET = 'age_open.node';

interface SeaApi {
  getRawAsset(key: string): ArrayBuffer;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function privateDir(): string {
  const cache = join(process.env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'etcd-recover', 'native');
  try {
    mkdirSync(cache, { recursive: true, mode: 0o700 });
    return cache;
  } catch {
    // No writable home (a container as a uid without one): a folder of our own in the temp folder.
    const dir = join(tmpdir(), `etcd-recover-native-${process.getuid?.() ?? 'user'}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    if ((process.getuid && st.uid !== process.getuid()) || (st.mode & 0o077) !== 0) throw new Error(`${dir} is not this user's alone`);
    return dir;
  }
}

function load(sea: SeaApi, asset: string): Record<string, unknown> {
  const bytes = new Uint8Array(sea.getRawAsset(asset));
  const sum = sha256(bytes);
  const file = join(privateDir(), `${asset.replace(/\.node$/, '')}-${sum.slice(0, 16)}.node`);
  let ok = false;
  try {
    ok = sha256(readFileSync(file)) === sum;
  } catch {
    /* not there yet */
  }
  if (!ok) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, bytes, { mode: 0o500 });
    chmodSync(tmp, 0o500);
    renameSync(tmp, file);
    if (sha256(readFileSync(file)) !== sum) throw new Error(`${file} does not hold the embedded binding`);
  }
  return dlopen(file);
}

/** A native addon's exports, opened the only way Node opens one: from a file. */
function dlopen(file: string): Record<string, unknown> {
  const m = { exports: {} as Record<string, unknown> };
  process.dlopen(m, file);
  return m.exports;
}

/** The single executable: both from its assets. */
export function useEmbeddedNatives(sea: SeaApi): void {
  setCrc32cLoader(() => load(sea, CRC_ASSET)['crc32c']);
  setAgeOpenLoader(() => load(sea, AGE_OPEN_ASSET));
}

/** The bundle (the agent image): the age opener from `native/` beside the bundled script. */
export function useBundledAgeOpener(script: string | undefined): void {
  if (!script) return;
  setAgeOpenLoader(() => dlopen(join(dirname(realpathSync(script)), 'native', AGE_OPEN_ASSET)));
}
