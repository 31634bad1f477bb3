import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setCrc32cLoader } from '@etcd-recover/core';

/**
 * The single executable cannot `require` the native CRC-32C binding (@node-rs/crc32), and without it
 * the JS CRC-32C costs ~1 s per GiB on every backup and verify (the keyspace hash and the upload's
 * checksums). So the binding travels in the executable as an SEA asset (scripts/release-binary.mjs)
 * and is loaded the only way Node loads a native addon, from a file: on the first checksum it is
 * written to a folder only this user can write (the cache folder, else a 0700 folder of this uid in
 * the temp folder) under its own sha256, checked against the asset before every load, and opened
 * with process.dlopen. Anything that fails leaves the JS path (same results, slower).
 */
export const CRC_ASSET = 'crc32c.node';

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

function load(sea: SeaApi): unknown {
  const bytes = new Uint8Array(sea.getRawAsset(CRC_ASSET));
  const sum = sha256(bytes);
  const file = join(privateDir(), `crc32c-${sum.slice(0, 16)}.node`);
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
  const m = { exports: {} as { crc32c?: unknown } };
  process.dlopen(m, file);
  return m.exports.crc32c;
}

export function useEmbeddedCrc32c(sea: SeaApi): void {
  setCrc32cLoader(() => load(sea));
}
