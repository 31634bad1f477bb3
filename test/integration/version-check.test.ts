import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { layout, Sandbox as SandboxClass, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { json, runCli } from '../support/cli.js';
import { destroyMembers, readMember, startSandbox, stopSandbox, storeFor, writeKeys } from '../support/sandbox.js';

const CLUSTER = 'version-it';
const KEYS = 1_000;
const reload = (sb: Sandbox) => SandboxClass.load(sb.dir)!;

/**
 * Here "a snapshot from another etcd" is a real 3.6 backup whose catalog record is edited afterwards
 * (fault injection: versions no etcd built here has, such as 3.9; real 3.5 and 3.7 snapshots across
 * minors are in test/integration/etcd-versions.test.ts): the check reads the record's etcdVersion (what the
 * source member reported) and storageVersion (what capture read from the snapshot's bbolt meta). The
 * bytes-over-record rule when the two disagree is covered by test/core/recovery/version-check.test.ts.
 */
describe('etcd version checks on a real 3-member etcd (3.6.16) and MinIO', function () {
  this.timeout(600_000);
  let sb: Sandbox;
  let backup: SnapshotRecord;
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);

  async function editRecord(patch: Partial<SnapshotRecord>): Promise<void> {
    const store = storeFor(sb);
    const key = layout.snapshotRecord(CLUSTER, backup.name);
    const rec = JSON.parse((await store.read(key))!.body.toString()) as SnapshotRecord;
    await store.put(key, JSON.stringify({ ...rec, ...patch }), { contentType: 'application/json' });
  }

  async function recoveryObjects(): Promise<string[]> {
    const keys: string[] = [];
    for await (const o of storeFor(sb).list(layout.recoveriesPrefix(CLUSTER))) keys.push(o.key);
    return keys;
  }

  /** Nothing was stopped or changed: the survivor runs with its data and every key, and no recovery began. */
  async function assertUntouched(survivor: string, revision: number): Promise<void> {
    const now = reload(sb);
    assert.ok(now.isRunning(survivor), `${survivor} was not stopped`);
    assert.ok(existsSync(`${now.member(survivor).dataDir}/member`), `${survivor}'s data is in place`);
    const { keys, revision: rev } = await readMember(now.member(survivor).clientURL);
    assert.equal(Object.keys(keys).length, KEYS, `${survivor} still holds every key`);
    assert.equal(rev, revision, `${survivor} is at the same revision`);
    assert.deepEqual(await recoveryObjects(), [], 'no journal was written: no step ran, not even the first');
    assert.equal(await storeFor(sb).read(layout.lock(CLUSTER)), undefined, 'no recovery lock was taken');
  }

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: CLUSTER });
    await writeKeys(sb.endpoints(), KEYS, 'k/');
    const r = await cli('backup', 'create', '-o', 'json', '-q');
    assert.equal(r.code, 0, r.stderr);
    backup = json<SnapshotRecord>(r);
    // What the real source member and the real bytes say.
    assert.equal(backup.etcdVersion, '3.6.16');
    assert.equal(backup.storageVersion, '3.6.0');
  });
  after(async () => stopSandbox(sb));

  it('a backup from a newer minor is refused before anything is stopped (exit 14); --dry-run -o json shows both versions', async () => {
    await editRecord({ etcdVersion: '3.7.0', storageVersion: '3.7.0' });
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const revision = (await readMember(sb.member('etcd-2').clientURL)).revision;

    const dry = await cli('quorum', '--dry-run', '-o', 'json', '--snapshot', backup.name);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = json(dry);
    assert.equal(plan.versions.snapshot.version, '3.7.0');
    assert.equal(plan.versions.snapshot.reported, '3.7.0');
    assert.equal(plan.versions.snapshot.storage, '3.7.0');
    assert.equal(plan.versions.target.version, '3.6.16');
    assert.match(plan.versions.target.source, /etcd --version/);
    assert.equal(plan.versions.verdict, 'refuse');
    assert.ok(plan.warnings.some((w: string) => /etcd version: REFUSED/.test(w)), plan.warnings.join('\n'));

    const human = await cli('quorum', '--dry-run', '--snapshot', backup.name);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /etcd: +snapshot 3\.7\.0 → target 3\.6\.16 \(REFUSED/);

    const r = await cli('quorum', '--yes', '--snapshot', backup.name);
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, new RegExp(`error: refusing to restore backup ${backup.name}: the snapshot is from etcd 3\\.7\\.0, newer than the target's etcd 3\\.6\\.16: etcd cannot downgrade a data dir\\n`));
    assert.match(r.stderr, /next: restore with etcd >= 3\.7, or choose an older backup with --snapshot/);
    const structured = await cli('quorum', '--yes', '--snapshot', backup.name, '-o', 'json');
    assert.equal(structured.code, 14, structured.stderr);
    assert.equal(json(structured).error.code, 'VERSION_MISMATCH');
    assert.equal(json(structured).error.exitCode, 14);
    await assertUntouched('etcd-2', revision);

    // The throwaway cluster of a drill runs the same local etcd: refused too, before it starts.
    const drill = await cli('backup', 'drill', backup.name);
    assert.equal(drill.code, 14, drill.stderr);
    assert.match(drill.stderr, /newer than the target's etcd 3\.6\.16/);
  });

  it('a different patch level warns and restores every key; --require-same-version refuses it', async () => {
    // Only the reported version differs: the bytes' storage version (3.6.0) is the target's minor.
    await editRecord({ etcdVersion: '3.6.15', storageVersion: '3.6.0' });
    sb = reload(sb);
    const revision = (await readMember(sb.member('etcd-2').clientURL)).revision;

    const strict = await cli('quorum', '--yes', '--snapshot', backup.name, '--require-same-version');
    assert.equal(strict.code, 14, strict.stderr);
    assert.match(strict.stderr, /--require-same-version: the snapshot is from etcd 3\.6\.15 and the target runs etcd 3\.6\.16: a different patch level/);
    assert.match(strict.stderr, /next: restore with etcd 3\.6\.15 \(the backup's release\)/);
    await assertUntouched('etcd-2', revision);
    const strictDrill = await cli('backup', 'drill', backup.name, '--require-same-version');
    assert.equal(strictDrill.code, 14, strictDrill.stderr);

    const dry = json(await cli('quorum', '--dry-run', '-o', 'json', '--snapshot', backup.name));
    assert.deepEqual([dry.versions.snapshot.version, dry.versions.target.version, dry.versions.verdict], ['3.6.15', '3.6.16', 'warn']);

    const run = await cli('quorum', '--yes', '--snapshot', backup.name, '-o', 'json');
    assert.equal(run.code, 0, run.stderr);
    // In the plan as printed before the run, and in the final report.
    assert.match(run.stderr, /warning: etcd version: the snapshot is from etcd 3\.6\.15 and the target runs etcd 3\.6\.16: a different patch level/);
    const report = json(run);
    assert.equal(report.versions.verdict, 'warn');
    assert.ok(report.warnings.some((w: string) => /3\.6\.15.*3\.6\.16.*patch level/.test(w)), report.warnings.join('\n'));
    const journal = JSON.parse((await storeFor(sb).read(layout.recoveryJournal(CLUSTER, report.id)))!.body.toString());
    assert.equal(journal.status, 'completed');
    assert.equal(journal.plan.versions.verdict, 'warn');
    sb = reload(sb);
    for (const m of sb.state.members) {
      const { keys, revision: rev } = await readMember(m.clientURL);
      assert.equal(Object.keys(keys).length, KEYS, `${m.name} holds every key`);
      assert.ok(rev > revision, `${m.name} revision ${rev} is above ${revision}`);
    }
  });

  it('--require-same-version restores a backup of the same release', async () => {
    sb = reload(sb);
    const r = await cli('backup', 'create', '-o', 'json', '-q');
    assert.equal(r.code, 0, r.stderr);
    const same = json<SnapshotRecord>(r);
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const run = await cli('quorum', '--yes', '--snapshot', same.name, '--require-same-version', '-o', 'json');
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.deepEqual([report.versions.snapshot.version, report.versions.target.version, report.versions.verdict, report.versions.requireSame], ['3.6.16', '3.6.16', 'ok', true]);
    for (const m of reload(sb).state.members) assert.equal(Object.keys((await readMember(m.clientURL)).keys).length, KEYS, `${m.name} holds every key`);
  });
});
