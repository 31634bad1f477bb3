import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { parse } from 'yaml';
import type { Sandbox } from '@etcd-recover/core';
import { kubectl, repoRoot } from '../support/binaries.js';
import { startSandbox, stopSandbox, tempDir } from '../support/sandbox.js';
import { etcdutlStatus, populate, saveSnapshot, startEtcd } from '../support/snapshot-fixtures.js';

/**
 * The release as krew ships it: `scripts/release-binary.mjs --out DIR` writes the archive and the
 * krew manifest; the archive is installed the way krew does it (unpacked into a store folder, the
 * manifest's `bin` linked into a bin folder) and the plugin runs through kubectl's real plugin
 * dispatch with NO Node.js on PATH, against a real etcd and MinIO.
 */
describe('the single executable, released and installed like krew does, run by kubectl without Node (real etcd + MinIO)', function () {
  this.timeout(300_000);
  const tmp = tempDir();
  let sb: Sandbox;
  let manifest: any;
  let archive: string;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    const out = join(tmp.path, 'release');
    execFileSync(join(repoRoot, 'node_modules', '.bin', 'node'), [join(repoRoot, 'scripts', 'release-binary.mjs'), '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    manifest = parse(readFileSync(join(out, 'etcd-recover.yaml'), 'utf8'));
    archive = join(out, 'kubectl-etcd_recover-linux-amd64.tar.gz');

    // krew: unpack into the store, link the bin; the completer is linked by hand (README, "Shell completion").
    const platform = manifest.spec.platforms[0];
    const store = join(tmp.path, 'krew', 'store', 'etcd-recover', manifest.spec.version);
    const bin = join(tmp.path, 'krew', 'bin');
    mkdirSync(store, { recursive: true });
    mkdirSync(bin, { recursive: true });
    execFileSync('tar', ['-xzf', archive, '-C', store]);
    symlinkSync(join(store, platform.bin), join(bin, 'kubectl-etcd_recover'));
    symlinkSync(join(store, 'kubectl_complete-etcd_recover'), join(bin, 'kubectl_complete-etcd_recover'));
    // PATH: kubectl, the krew bin, and the two tools the completer's sh uses; no node anywhere.
    const tools = join(tmp.path, 'tools');
    mkdirSync(tools);
    symlinkSync(kubectl(), join(tools, 'kubectl'));
    for (const t of ['readlink', 'dirname']) symlinkSync(execFileSync('sh', ['-c', `command -v ${t}`], { encoding: 'utf8' }).trim(), join(tools, t));
    env = { PATH: `${bin}:${tools}`, HOME: join(tmp.path, 'home') };
    sb = await startSandbox({ members: 3, cluster: 'sea' });
  });
  after(async () => {
    await stopSandbox(sb);
    tmp.remove();
  });

  const run = (args: string[]) => spawnSync(join(tmp.path, 'tools', 'kubectl'), args, { env, encoding: 'utf8', timeout: 60_000 });

  it('the krew manifest names the archive by its sha256 and every file it lists is in it', () => {
    const platform = manifest.spec.platforms[0];
    assert.equal(manifest.kind, 'Plugin');
    assert.equal(manifest.metadata.name, 'etcd-recover');
    assert.deepEqual(platform.selector.matchLabels, { os: 'linux', arch: 'amd64' });
    assert.equal(platform.sha256, createHash('sha256').update(readFileSync(archive)).digest('hex'));
    assert.match(platform.uri, /\/kubectl-etcd_recover-linux-amd64\.tar\.gz$/);
    const listed = execFileSync('tar', ['-tzf', archive], { encoding: 'utf8' }).trim().split('\n');
    for (const f of platform.files) assert.ok(listed.includes(f.from), `${f.from} is in the archive (${listed.join(', ')})`);
    assert.ok(listed.includes(platform.bin));
  });

  it('no Node.js on PATH: kubectl finds the plugin and runs `kubectl etcd-recover status` against the cluster', () => {
    const which = spawnSync('/bin/sh', ['-c', 'command -v node'], { env, encoding: 'utf8' });
    assert.ok(which.status !== 0 && which.stdout === '', `node is not on PATH (${which.stdout})`);
    const list = run(['plugin', 'list']);
    assert.match(list.stdout, /kubectl-etcd_recover/, list.stderr);
    const v = run(['etcd-recover', '--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^@etcd-recover\/kubectl-plugin\/\d+\.\d+\.\d+ linux-x64 node-v\d+/);
    const st = run(['etcd-recover', 'status', '-o', 'json', '--no-fail', '--sandbox-dir', sb.dir]);
    assert.equal(st.status, 0, st.stderr);
    const doc = JSON.parse(st.stdout);
    assert.equal(doc.members.length, 3);
    for (const m of doc.members) assert.equal(m.healthy, true, JSON.stringify(m));
  });

  it('help says `kubectl etcd-recover`, and completion works through kubectl', () => {
    const h = run(['etcd-recover', 'backup', 'create', '--help']);
    assert.equal(h.status, 0, h.stderr);
    assert.match(h.stdout, /\$ kubectl etcd-recover backup create/);
    assert.doesNotMatch(h.stdout, /kubectl-etcd_recover/);
    const c = run(['__complete', 'etcd-recover', 'back']);
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stdout, /^backup\t/m);
    assert.match(c.stdout, /^:\d+$/m);
  });

  it('a snapshot large enough to be hashed in parallel (>= 64 MiB) verifies: the executable hashes it in a second process of itself, the digest right', async function () {
    // A startup snapshot with the commands preloaded makes a Worker abort inside Node (docs/design.md,
    // Start-up): the executable starts none, and hashes a large file in a second process instead.
    this.timeout(300_000);
    const etcd = await startEtcd();
    const file = join(tmp.path, 'big.db');
    try {
      await populate(etcd.endpoint, { keys: 500, largeValues: Array.from({ length: 72 }, () => 1_000_000) });
      await saveSnapshot(etcd.endpoint, file);
    } finally {
      await etcd.stop();
    }
    assert.ok(statSync(file).size >= 64 * 1024 * 1024, `snapshot is ${statSync(file).size} bytes`);
    const v = run(['etcd-recover', 'backup', 'verify', '--file', file, '-q', '-o', 'json']);
    assert.equal(v.status, 0, `${v.signal ?? ''} ${v.stderr.slice(0, 600)}`);
    const out = JSON.parse(v.stdout);
    assert.equal(out.ok, true);
    const report = out.results[0];
    // The trailer is the sha256 of what precedes it: the report's digest is of the bytes before it.
    const bytes = readFileSync(file);
    assert.equal(report.sha256, createHash('sha256').update(bytes.subarray(0, bytes.length - 32)).digest('hex'));
    assert.equal(report.hasTrailer, true);
    assert.equal(report.integrityProven, true, 'the trailer matched the digest of the bytes before it');
    // The keyspace hash (CRC-32C) is etcdutl's.
    assert.equal(report.hash, (await etcdutlStatus(file)).hash);
    // The native CRC-32C binding came out of the executable into a folder only this user can write.
    const native = join(tmp.path, 'home', '.cache', 'etcd-recover', 'native');
    const loaded = readdirSync(native).filter((f) => /^crc32c-[0-9a-f]{16}\.node$/.test(f));
    assert.equal(loaded.length, 1, readdirSync(native).join(', '));
    assert.equal(statSync(native).mode & 0o077, 0, 'the folder is this user\'s alone');
    assert.equal(statSync(join(native, loaded[0]!)).mode & 0o222, 0, 'the binding is not writable');
    // The same verify without a writable home (a container's uid): the binding goes to a private temp folder; same result.
    mkdirSync(join(tmp.path, 'tmp'), { recursive: true });
    // A HOME that is a file: no folder can be made under it, whoever runs this (root too).
    writeFileSync(join(tmp.path, 'home-is-a-file'), '');
    const noHome = spawnSync(join(tmp.path, 'tools', 'kubectl'), ['etcd-recover', 'backup', 'verify', '--file', file, '-q', '-o', 'json'], {
      env: { ...env, HOME: join(tmp.path, 'home-is-a-file'), TMPDIR: join(tmp.path, 'tmp') },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(noHome.status, 0, noHome.stderr);
    assert.equal(JSON.parse(noHome.stdout).results[0].hash, report.hash);
    const priv = readdirSync(join(tmp.path, 'tmp')).filter((f) => f.startsWith('etcd-recover-native-'));
    assert.equal(priv.length, 1, readdirSync(join(tmp.path, 'tmp')).join(', '));
    assert.equal(statSync(join(tmp.path, 'tmp', priv[0]!)).mode & 0o077, 0);
    // One byte changed inside a value: the structure still parses, the digest (from the other process) does not match.
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    writeFileSync(file, bytes);
    const bad = run(['etcd-recover', 'backup', 'verify', '--file', file, '-q', '-o', 'json']);
    assert.equal(bad.status, 3, `${bad.signal ?? ''} ${bad.stderr.slice(0, 600)}`);
    const badReport = JSON.parse(bad.stdout).results[0];
    assert.ok(badReport.defects.some((d: { code: string }) => d.code === 'TRAILER_MISMATCH'), JSON.stringify(badReport.defects));
    assert.notEqual(badReport.sha256, report.sha256);
  });

  it('an encrypted backup is made and verified in the bucket: its chunks opened by the native age opener the executable carries', async () => {
    const identity = await generateX25519Identity();
    const keyDir = join(tmp.path, 'age');
    mkdirSync(keyDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(keyDir, 'id.txt'), `${identity}\n`, { mode: 0o600 });
    writeFileSync(join(keyDir, 'pub.txt'), `${await identityToRecipient(identity)}\n`);
    const age = ['--age-recipients-file', join(keyDir, 'pub.txt'), '--age-identity-file', join(keyDir, 'id.txt')];
    // Enough keys for a payload of several 1 MiB batches.
    await populate(sb.endpoints()[0]!, { keys: 200, largeValues: Array.from({ length: 6 }, () => 1_000_000) });
    const made = run(['etcd-recover', 'backup', 'create', '--sandbox-dir', sb.dir, ...age, '-q', '-o', 'json']);
    assert.equal(made.status, 0, made.stderr);
    const name = JSON.parse(made.stdout).name as string;
    const v = run(['etcd-recover', 'backup', 'verify', name, '--sandbox-dir', sb.dir, ...age, '-q', '-o', 'json']);
    assert.equal(v.status, 0, `${v.signal ?? ''} ${v.stderr.slice(0, 600)}`);
    const out = JSON.parse(v.stdout);
    assert.equal(out.ok, true, v.stdout);
    const native = join(tmp.path, 'home', '.cache', 'etcd-recover', 'native');
    const loaded = readdirSync(native).filter((f) => /^age_open-[0-9a-f]{16}\.node$/.test(f));
    assert.equal(loaded.length, 1, `the age opener came out of the executable: ${readdirSync(native).join(', ')}`);
    assert.equal(statSync(join(native, loaded[0]!)).mode & 0o222, 0, 'the module is not writable');
    // A wrong key: the header is left to the age-encryption package, loaded on demand inside the
    // executable's startup snapshot, which says no identity matched (ENCRYPTION_KEY, exit 13).
    const other = await generateX25519Identity();
    writeFileSync(join(keyDir, 'other.txt'), `${other}\n`, { mode: 0o600 });
    const wrong = run(['etcd-recover', 'backup', 'verify', name, '--sandbox-dir', sb.dir, '--age-identity-file', join(keyDir, 'other.txt'), '-q', '-o', 'json']);
    assert.equal(wrong.status, 13, `${wrong.stderr.slice(0, 600)}`);
    assert.match(wrong.stderr + wrong.stdout, /none of the 1 identity\(ies\)/);
    assert.ok(!(wrong.stderr + wrong.stdout).includes(other), 'the identity is never printed');
  });
});
