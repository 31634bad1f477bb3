import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { AgeKeys, Catalog, captureSnapshot, Etcd3Gateway, layout, rekeyBackup, Sandbox as SandboxClass, type ObjectStore, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { binaries } from '../support/binaries.js';
import { json, runCli } from '../support/cli.js';
import { destroyMembers, readMember, startSandbox, stopSandbox, storeFor, tempDir, writeKeys } from '../support/sandbox.js';

const CLUSTER = 'enc-it';
const SECRET_VALUE = `s3cr3t-${Math.random().toString(36).slice(2)}-password`;

async function rawObject(sb: Sandbox, name: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of storeFor(sb).get(layout.snapshotObject(CLUSTER, name))) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe('encrypted backups (age) on a real etcd and MinIO', function () {
  this.timeout(600_000);
  let sb: Sandbox;
  const tmp = tempDir();
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);
  let backup: SnapshotRecord;
  let identityFile: string;

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: CLUSTER, encrypt: true });
    identityFile = sb.state.encryption!.identityFile;
    await writeKeys(sb.endpoints(), 2_000, 'k/');
    // What a control plane's etcd holds: Secrets. Their names and values must not be readable in the bucket.
    execFileSync(binaries().etcdctl, ['--endpoints', sb.endpoints()[0]!, 'put', '/registry/secrets/default/db-credentials', SECRET_VALUE]);
  });
  after(async () => {
    await stopSandbox(sb);
    tmp.remove();
  });

  it('backup create encrypts for the recipients: the bucket holds an age file with no key or value of the cluster in it', async () => {
    const r = await cli('backup', 'create', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    backup = json<SnapshotRecord>(r);
    assert.deepEqual(backup.encryption?.recipients, [sb.state.encryption!.recipient]);
    assert.equal(backup.encryption?.format, 'age');
    assert.equal(backup.formatVersion, 2, 'an older tool says "upgrade", not "corrupt"');
    assert.equal(backup.verification?.ok, true);
    const raw = await rawObject(sb, backup.name);
    assert.equal(raw.length, backup.objectSize);
    assert.equal(createHash('sha256').update(raw).digest('hex'), backup.encryption!.objectSha256);
    assert.ok(raw.subarray(0, 22).toString() === 'age-encryption.org/v1\n');
    for (const needle of [SECRET_VALUE, '/registry/secrets', 'db-credentials', 'k/0000001', 'vvvvvvvvvvvvvvvv']) {
      assert.equal(raw.indexOf(needle), -1, `"${needle}" is not in the object`);
    }
    // The record names the public key only; nothing in it or in the listing opens the backup.
    const record = (await storeFor(sb).read(layout.snapshotRecord(CLUSTER, backup.name)))!.body.toString();
    const identity = readFileSync(identityFile, 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
    assert.ok(!record.includes(identity) && !r.stdout.includes(identity) && !r.stderr.includes(identity));
    const list = await cli('backup', 'list');
    assert.match(list.stdout, /age \(1\)/);
  });

  it("Debian's age decrypts the object with the identity, and bare etcdutl restores it with every key", async () => {
    const enc = join(tmp.path, 'backup.db.age');
    const plain = join(tmp.path, 'backup.db');
    writeFileSync(enc, await rawObject(sb, backup.name));
    execFileSync('age', ['-d', '-i', identityFile, '-o', plain, enc]);
    assert.equal(createHash('sha256').update(readFileSync(plain).subarray(0, -32)).digest('hex'), backup.sha256);
    const status = JSON.parse(execFileSync(binaries().etcdutl, ['snapshot', 'status', plain, '-w', 'json']).toString()) as { revision: number; totalKey: number };
    assert.equal(status.revision, backup.revision);
    assert.equal(status.totalKey, backup.totalKeys);
    execFileSync(binaries().etcdutl, ['snapshot', 'restore', plain, '--data-dir', join(tmp.path, 'restored'), '--name', 'x', '--initial-cluster', 'x=http://127.0.0.1:1', '--initial-advertise-peer-urls', 'http://127.0.0.1:1'], { stdio: 'ignore' });
  });

  it('backup verify decrypts as it streams and proves the sha256 trailer inside the ciphertext', async () => {
    const r = await cli('backup', 'verify', backup.name, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const v = json(r);
    assert.equal(v.ok, true);
    assert.equal(v.results[0].sha256, backup.sha256);
    assert.equal(v.results[0].integrityProven, true);
  });

  it('a wrong key and a missing key are ENCRYPTION_KEY (exit 13), never "corrupt", and print no identity', async () => {
    const other = await generateX25519Identity();
    const otherFile = join(tmp.path, 'other.txt');
    writeFileSync(otherFile, `${other}\n`);
    const wrong = await cli('backup', 'verify', backup.name, '--age-identity-file', otherFile);
    assert.equal(wrong.code, 13, wrong.stderr);
    assert.match(wrong.stderr, new RegExp(`encrypted for ${sb.state.encryption!.recipient}; none of the 1 identity\\(ies\\) from file ${otherFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is one of them`));
    assert.ok(!wrong.stderr.includes(other) && !wrong.stdout.includes(other));
    const recipientsOnly = join(tmp.path, 'recipients.txt');
    writeFileSync(recipientsOnly, `${await identityToRecipient(other)}\n`);
    const missing = await cli('backup', 'verify', backup.name, '--age-recipients-file', recipientsOnly);
    assert.equal(missing.code, 13, missing.stderr);
    assert.match(missing.stderr, /no age identity is configured/);
    // The record was not marked failed by a key problem.
    assert.equal((await new Catalog(storeFor(sb), CLUSTER).get(backup.name)).verification?.ok, true);
  });

  it('a bit-flipped or truncated ciphertext fails verification (exit 3) and is recorded as failed', async () => {
    for (const [what, damage, re] of [
      ['bit flip', (b: Buffer) => ((b[b.length - 100_000]! ^= 0x04), b), /failed authentication in the chunk at byte \d+/],
      ['truncation', (b: Buffer) => b.subarray(0, b.length - 5000), /truncated|final chunk/],
    ] as const) {
      const made = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
      const key = layout.snapshotObject(CLUSTER, made.name);
      await storeFor(sb).put(key, damage(await rawObject(sb, made.name)), { contentType: 'application/octet-stream' });
      const r = await cli('backup', 'verify', made.name);
      assert.equal(r.code, 3, `${what}: ${r.stderr}`);
      assert.match(r.stderr, re, what);
      assert.equal((await new Catalog(storeFor(sb), CLUSTER).get(made.name)).verification?.ok, false, `${what} recorded`);
      // The way back refuses it too: a drill of it fails before restoring anything.
      const drill = await cli('backup', 'drill', made.name);
      assert.equal(drill.code, 3, `${what} drill: ${drill.stderr}`);
    }
  });

  it('a record that claims encryption over a plain object, and the reverse, are refused naming the disagreement', async () => {
    // A plain backup (no keys in this catalog) whose record is then edited to claim encryption.
    const plainCatalog = new Catalog(storeFor(sb), CLUSTER);
    const gateway = new Etcd3Gateway({ endpoints: sb.endpoints() });
    let plain: SnapshotRecord;
    try {
      plain = await captureSnapshot({ gateway, catalog: plainCatalog });
    } finally {
      gateway.close();
    }
    assert.equal(plain.encryption, undefined);
    await plainCatalog.writeRecord({ ...plain, encryption: { format: 'age', recipients: [sb.state.encryption!.recipient], objectSha256: '0'.repeat(64) } });
    const a = await cli('backup', 'verify', plain.name);
    assert.equal(a.code, 3, a.stderr);
    assert.match(a.stderr, /is not an age-encrypted file, though its record says it is encrypted/);
    // An encrypted backup whose record lost its encryption field.
    const enc = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    const { encryption: _dropped, ...stripped } = enc;
    await plainCatalog.writeRecord(stripped as SnapshotRecord);
    const b = await cli('backup', 'verify', enc.name);
    assert.equal(b.code, 3, b.stderr);
    assert.match(b.stderr, /is an age-encrypted object, but its catalog record says it is not encrypted/);
  });

  describe('key rotation: backup rekey', () => {
    let fresh: { identity: string; recipient: string; idFile: string; pubFile: string };
    before(async () => {
      const identity = await generateX25519Identity();
      fresh = { identity, recipient: await identityToRecipient(identity), idFile: join(tmp.path, 'new.key'), pubFile: join(tmp.path, 'new.pub') };
      writeFileSync(fresh.idFile, `${identity}\n`);
      writeFileSync(fresh.pubFile, `# the new key\n${fresh.recipient}\n`);
    });

    it('re-encrypts every sound backup for the new recipients, leaves the damaged ones as they were, and says so (exit 3)', async () => {
      const before = (await new Catalog(storeFor(sb), CLUSTER).list()).snapshots;
      const damaged = before.filter((r) => r.verification?.ok === false).map((r) => r.name);
      assert.ok(damaged.length >= 2, 'the corrupted backups of the earlier test');
      const dry = json(await cli('backup', 'rekey', '--all', '--dry-run', '--age-recipients-file', fresh.pubFile, '--age-identity-file', identityFile, '-o', 'json'));
      assert.equal(dry.results.length, before.length);
      const r = await cli('backup', 'rekey', '--all', '--yes', '--age-recipients-file', fresh.pubFile, '--age-identity-file', identityFile, '-o', 'json');
      assert.equal(r.code, 3, r.stderr);
      const out = json(r);
      const by = Object.fromEntries(out.results.map((x: { name: string; outcome: string }) => [x.name, x.outcome]));
      for (const name of damaged) assert.equal(by[name], 'failed', name);
      assert.equal(by[backup.name], 'rekeyed');
      const after = await new Catalog(storeFor(sb), CLUSTER).get(backup.name);
      assert.deepEqual(after.encryption?.recipients, [fresh.recipient]);
      assert.equal(after.sha256, backup.sha256, 'the same snapshot inside');
      const raw = await rawObject(sb, backup.name);
      assert.equal(createHash('sha256').update(raw).digest('hex'), after.encryption!.objectSha256);
      // Nothing of the rekey's work is left behind.
      const leftovers = [];
      for await (const o of storeFor(sb).list(`clusters/${CLUSTER}/rekey/`)) leftovers.push(o.key);
      assert.deepEqual(leftovers, []);
      // The damaged ones are as they were: still failing verification, still encrypted for the old key.
      for (const name of damaged) {
        const was = before.find((x) => x.name === name)!;
        assert.deepEqual((await new Catalog(storeFor(sb), CLUSTER).get(name)).encryption, was.encryption, `${name} left as it was`);
      }
    });

    it('a rekeyed backup opens with the new identity (ours and age -d), no longer with the old one', async () => {
      const ok = await cli('backup', 'verify', backup.name, '--age-identity-file', fresh.idFile);
      assert.equal(ok.code, 0, ok.stderr);
      const old = await cli('backup', 'verify', backup.name);
      assert.equal(old.code, 13, old.stderr);
      const enc = join(tmp.path, 'rekeyed.age');
      writeFileSync(enc, await rawObject(sb, backup.name));
      const plain = execFileSync('age', ['-d', '-i', fresh.idFile, enc], { maxBuffer: 1 << 28 });
      assert.equal(createHash('sha256').update(plain.subarray(0, -32)).digest('hex'), backup.sha256);
    });

    it('interrupted while the object is replaced, the old bytes survive and a rerun finishes', async () => {
      const made = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
      const oldBytes = await rawObject(sb, made.name);
      const real = storeFor(sb);
      const objectKey = layout.snapshotObject(CLUSTER, made.name);
      // Fault injection: the store fails the one upload that replaces the object (a crash there).
      const failing: ObjectStore = new Proxy(real, {
        get(t, p, r) {
          if (p === 'upload') return async (key: string, ...rest: Parameters<ObjectStore['upload']> extends [string, ...infer R] ? R : never) => {
            if (key === objectKey) throw new Error('injected crash while replacing the object');
            return t.upload(key, ...rest);
          };
          const v = Reflect.get(t, p, r);
          return typeof v === 'function' ? v.bind(t) : v;
        },
      });
      const keys = await AgeKeys.parse({ recipients: readFileSync(fresh.pubFile, 'utf8'), identities: readFileSync(identityFile, 'utf8'), source: 'test' });
      await assert.rejects(rekeyBackup(new Catalog(failing, CLUSTER, keys), made.name), /injected crash/);
      // The record still describes the old object, and the old bytes are in place or aside.
      const rec = await new Catalog(real, CLUSTER).get(made.name);
      assert.deepEqual(rec.encryption?.recipients, [sb.state.encryption!.recipient]);
      const aside = (await real.read(layout.rekeyPrevious(CLUSTER, made.name)))?.body;
      assert.ok(aside?.equals(oldBytes), 'a proven copy of the old object is kept aside');
      const v = await cli('backup', 'verify', made.name);
      assert.equal(v.code, 0, `the old key still opens it: ${v.stderr}`);
      const rerun = await cli('backup', 'rekey', made.name, '--yes', '--age-recipients-file', fresh.pubFile, '--age-identity-file', identityFile, '-o', 'json');
      assert.equal(rerun.code, 0, rerun.stderr);
      assert.equal(json(rerun).results[0].outcome, 'finished');
      assert.deepEqual((await new Catalog(real, CLUSTER).get(made.name)).encryption?.recipients, [fresh.recipient]);
      assert.equal((await cli('backup', 'verify', made.name, '--age-identity-file', fresh.idFile)).code, 0);
      assert.equal(await real.head(layout.rekeyPrevious(CLUSTER, made.name)), undefined, 'the copy aside is removed once the new object is proven');
    });
  });

  it('companions declared without encryption: the backup is refused before anything is streamed (exit-code ENCRYPTION_KEY)', async () => {
    const plainCatalog = new Catalog(storeFor(sb), CLUSTER);
    const before = (await plainCatalog.list()).snapshots.length;
    const objects = async () => {
      let n = 0;
      for await (const _ of storeFor(sb).list(layout.snapshotsPrefix(CLUSTER))) n++;
      return n;
    };
    const objectsBefore = await objects();
    const gateway = new Etcd3Gateway({ endpoints: sb.endpoints() });
    let asked = false;
    try {
      await assert.rejects(
        captureSnapshot({ gateway, catalog: plainCatalog, companions: async () => ((asked = true), { namespace: 'x', items: [], missing: [] }) }),
        (e: Error & { code?: string }) => e.code === 'ENCRYPTION_KEY' && /companions are never stored in the clear/.test(e.message),
      );
    } finally {
      gateway.close();
    }
    assert.equal(asked, false, 'the companions were not even read');
    assert.equal((await plainCatalog.list()).snapshots.length, before);
    assert.equal(await objects(), objectsBefore, 'nothing was uploaded');
  });

  it('quorum restores an encrypted backup when every member is lost: every key back', async () => {
    sb = SandboxClass.load(sb.dir)!;
    await destroyMembers(sb, ['etcd-0', 'etcd-1', 'etcd-2']);
    const r = await cli('quorum', '--yes', '--snapshot', backup.name, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    sb = SandboxClass.load(sb.dir)!;
    for (const m of sb.state.members) {
      const { keys } = await readMember(m.clientURL, 'k/');
      assert.equal(Object.keys(keys).length, 2_000, m.name);
      assert.equal((await readMember(m.clientURL, '/registry/secrets/')).keys['/registry/secrets/default/db-credentials'], SECRET_VALUE);
    }
  });
});
