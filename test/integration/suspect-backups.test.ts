import { strict as assert } from 'node:assert';
import { Etcd3 } from 'etcd3';
import { Catalog, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { json, runCli } from '../support/cli.js';
import { startSandbox, stopSandbox, storeFor, writeKeys } from '../support/sandbox.js';

const AGGRESSIVE = ['--keep-last', '1', '--keep-within', '0', '--hourly', '0', '--daily', '0', '--weekly', '0'];

async function deleteAll(endpoints: string[], prefix: string): Promise<void> {
  const client = new Etcd3({ hosts: endpoints });
  try {
    await client.delete().prefix(prefix);
  } finally {
    client.close();
  }
}

/** An emptied cluster keeps being backed up; those backups must not push out the good ones. */
describe('suspect backups: an empty-cluster backup after a full one, on real etcd and MinIO', function () {
  this.timeout(300_000);
  let sb: Sandbox;
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);
  const list = async (...extra: string[]) => json<{ snapshots: (SnapshotRecord & { trusted: boolean })[] }>(await cli('backup', 'list', '-o', 'json', ...extra)).snapshots;
  let good: SnapshotRecord;
  let empty: SnapshotRecord;
  let empty2: SnapshotRecord;

  before(async () => {
    sb = await startSandbox({ members: 1, cluster: 'suspect-it' });
  });
  after(async () => {
    await stopSandbox(sb);
  });

  it('a small cluster emptied is not judged (below the 1,000-key floor): its backups stay trusted', async () => {
    await writeKeys(sb.endpoints(), 100, 'small/', 16);
    const a = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q', '--cluster', 'small-it'));
    await deleteAll(sb.endpoints(), 'small/');
    const r = await cli('backup', 'create', '-o', 'json', '-q', '--cluster', 'small-it');
    assert.equal(r.code, 0, r.stderr);
    const b = json<SnapshotRecord>(r);
    assert.ok(a.totalKeys >= 100 && b.totalKeys < 10, `${a.totalKeys} -> ${b.totalKeys}`);
    assert.equal(b.suspect, undefined);
    assert.deepEqual((await list('--cluster', 'small-it')).map((s) => s.trusted), [true, true]);
  });

  it('backup create marks the backup of the emptied cluster SUSPECT in its catalog record, naming the good one', async () => {
    await writeKeys(sb.endpoints(), 2_000, 'k/', 64);
    const r1 = await cli('backup', 'create', '-o', 'json');
    assert.equal(r1.code, 0, r1.stderr);
    good = json<SnapshotRecord>(r1);
    assert.ok(good.userKeys! >= 2_000, `userKeys ${good.userKeys}`);
    assert.equal(good.suspect, undefined);

    await deleteAll(sb.endpoints(), 'k/');
    const r2 = await cli('backup', 'create', '-o', 'json');
    assert.equal(r2.code, 0, r2.stderr);
    empty = json<SnapshotRecord>(r2);
    assert.equal(empty.verification?.ok, true, 'intact: suspect is about content, not integrity');
    assert.ok(empty.suspect, 'marked suspect');
    assert.equal(empty.suspect.baseline.name, good.name);
    assert.equal(empty.suspect.baseline.userKeys, good.userKeys);
    assert.match(empty.suspect.reasons[0]!, new RegExp(`^keys fell from ${good.userKeys} \\(backup ${good.name}\\) to ${empty.userKeys} \\(\\d+%, below 50%\\)$`));
    assert.equal(empty.suspect.confirmed, undefined);
    assert.match(r2.stderr, /SUSPECT backup: keys fell from/);
    // It is in the stored record, not only in the command's output.
    const stored = await new Catalog(storeFor(sb), 'suspect-it').get(empty.name);
    assert.deepEqual(stored.suspect, empty.suspect);
  });

  it('backup list shows it suspect and untrusted in json, yaml and table output', async () => {
    const snaps = await list();
    assert.deepEqual(snaps.map((s) => [s.name, s.trusted, Boolean(s.suspect)]), [[empty.name, false, true], [good.name, true, false]]);
    const y = await cli('backup', 'list', '-o', 'yaml');
    assert.match(y.stdout, /trusted: false/);
    assert.match(y.stdout, /suspect:\n\s+reasons:\n\s+- keys fell from/);
    const t = await cli('backup', 'list');
    assert.equal(t.code, 0, t.stderr);
    const row = t.stdout.split('\n').find((l) => l.startsWith(empty.name))!;
    assert.match(row, /SUSPECT, yes \(create/);
    assert.doesNotMatch(t.stdout.split('\n').find((l) => l.startsWith(good.name))!, /SUSPECT/);
    assert.match(t.stdout, new RegExp(`SUSPECT ${empty.name}: keys fell from .* backup confirm ${empty.name}`));
  });

  it('quorum --dry-run with restore point latest plans the good backup, not the newer suspect one', async () => {
    const r = await cli('quorum', '--dry-run', '--restore-point', 'latest', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const plan = json(r);
    assert.equal(plan.restorePoint.kind, 'backup');
    assert.equal(plan.restorePoint.name, good.name);
  });

  it('every later backup of the empty cluster is suspect too (still judged against the good one), and prune keeps the good backup', async () => {
    empty2 = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    assert.equal(empty2.suspect?.baseline.name, good.name);
    const dry = await cli('backup', 'prune', '--dry-run', ...AGGRESSIVE, '-o', 'json');
    assert.equal(dry.code, 0, dry.stderr);
    const plan = json(dry);
    assert.deepEqual(plan.suspects, [empty2.name, empty.name]);
    const g = plan.decisions.find((d: { name: string }) => d.name === good.name);
    assert.equal(g.keep, true);
    assert.ok(g.reasons.some((x: string) => x.includes(`suspect backup ${empty2.name} (and 1 more) is unconfirmed`)), g.reasons.join('; '));
    const done = await cli('backup', 'prune', '--yes', ...AGGRESSIVE);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /SUSPECT backup\(s\) newer than every trusted one/);
    assert.match(done.stdout, new RegExp(`${empty2.name} \\(SUSPECT\\)`));
    // The older suspect backup went by the policy; the good one stayed.
    assert.deepEqual((await list()).map((s) => s.name), [empty2.name, good.name]);
  });

  it('the scheduled agent backup marks it suspect, warns in its log and its prune keeps the good backup', async () => {
    const r = await cli('agent', 'backup', '--quiet', ...AGGRESSIVE, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const out = json(r);
    assert.equal(out.backup.suspect.baseline.name, good.name);
    assert.match(r.stderr, new RegExp(`warning: backup ${out.backup.name} is SUSPECT: keys fell from`));
    assert.ok(!out.prune.deleted.includes(good.name));
    assert.deepEqual((await list()).map((s) => s.name), [out.backup.name, good.name]);
    empty2 = out.backup;
  });

  it('backup confirm records the confirmation; then the policy applies again and later empty backups are trusted', async () => {
    const refused = await cli('backup', 'confirm', empty2.name);
    assert.equal(refused.code, 8, refused.stderr);
    assert.equal((await list())[0]!.trusted, false, 'nothing changed without confirmation');
    const notSuspect = await cli('backup', 'confirm', good.name, '--yes');
    assert.equal(notSuspect.code, 9, notSuspect.stderr);
    assert.match(notSuspect.stderr, /is not suspect: there is nothing to confirm/);

    const r = await cli('backup', 'confirm', empty2.name, '--yes', '--reason', 'emptied on purpose by the test', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const c = json<SnapshotRecord>(r);
    assert.equal(c.suspect?.confirmed?.reason, 'emptied on purpose by the test');
    assert.match(c.suspect!.confirmed!.by, /.+@.+/);
    const stored = await new Catalog(storeFor(sb), 'suspect-it').get(empty2.name);
    assert.ok(stored.suspect?.confirmed?.at, 'recorded in the catalog record');
    assert.deepEqual((await list()).map((s) => [s.name, s.trusted]), [[empty2.name, true], [good.name, true]]);

    const next = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    assert.equal(next.suspect, undefined, 'compared with the confirmed backup now');
    const done = json(await cli('backup', 'prune', '--yes', ...AGGRESSIVE, '-o', 'json'));
    assert.deepEqual(done.suspects, []);
    assert.ok(done.deleted.includes(good.name), 'the policy applies again once the collapse is confirmed');
    assert.deepEqual((await list()).map((s) => s.name), [next.name]);
  });
});
