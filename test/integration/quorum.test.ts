import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer as createTcpServer, type Server } from 'node:net';
import { hostname } from 'node:os';
import { layout, Sandbox as SandboxClass, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { json, runCli } from '../support/cli.js';
import { countOnMember, destroyMembers, readMember, startSandbox, stopSandbox, storeFor, writeKeys } from '../support/sandbox.js';
import { startFlakyS3Proxy } from '../support/flaky-proxy.js';

/** Every member holds every expected key, and its revision is above `floor`. */
async function assertRestored(sb: Sandbox, expected: number, floor: number, prefix = 'k/'): Promise<void> {
  for (const m of sb.state.members) {
    const { keys, revision } = await readMember(m.clientURL, prefix);
    assert.equal(Object.keys(keys).length, expected, `${m.name} holds ${Object.keys(keys).length} of ${expected} keys`);
    assert.ok(revision >= floor, `${m.name} revision ${revision} >= ${floor}`);
  }
}

const reload = (sb: Sandbox) => SandboxClass.load(sb.dir)!;

/**
 * Until every member has applied the same revision: a write is acknowledged once a majority has it,
 * and a survivor that had not applied the last one when the others die rightly restores without it.
 */
async function settled(sb: Sandbox): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const revs = await Promise.all(sb.state.members.map(async (m) => (await readMember(m.clientURL, '\u0000')).revision));
    if (new Set(revs).size === 1) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('members did not converge on one revision');
}

describe('quorum-loss recovery on a real 3-member etcd', function () {
  this.timeout(600_000);
  let sb: Sandbox;
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: 'quorum-it' });
    await writeKeys(sb.endpoints(), 3_000, 'k/');
  });
  after(async () => stopSandbox(sb));

  it('refuses while quorum holds, and --dry-run -o json prints the plan the run then executes', async () => {
    const refused = await cli('quorum', '--yes');
    assert.equal(refused.code, 9, refused.stderr);
    assert.match(refused.stderr, /quorum still holds/);
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const dry = await cli('quorum', '--dry-run', '-o', 'json');
    assert.equal(dry.code, 0, dry.stderr);
    const plan = json(dry);
    assert.equal(plan.kind, 'quorum');
    assert.equal(plan.restorePoint.kind, 'live');
    assert.equal(plan.restorePoint.member, 'etcd-2');
    assert.deepEqual(plan.observed.lost, ['etcd-0', 'etcd-1']);
    // Nothing changed by the dry run: etcd-2 still has its data and runs.
    assert.ok(reload(sb).isRunning('etcd-2'));
    const before = (await readMember(sb.member('etcd-2').clientURL)).revision;
    const run = await cli('quorum', '--yes', '-o', 'json');
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.equal(report.restorePoint.kind, 'live');
    // The run executed exactly the steps of the plan, in order.
    const journal = JSON.parse((await storeFor(sb).read(layout.recoveryJournal('quorum-it', report.id)))!.body.toString());
    assert.deepEqual(journal.steps.map((s: { id: string }) => s.id), plan.steps.map((s: { id: string }) => s.id));
    assert.ok(journal.steps.every((s: { state: string }) => s.state === 'done'));
    assert.equal(journal.status, 'completed');
    await assertRestored(reload(sb), 3_000, before + 1);
    for (const m of ['etcd-0', 'etcd-1', 'etcd-2']) assert.ok(existsSync(`${sb.member(m).dataDir}.before-${report.id}`) || m !== 'etcd-2');
  });

  it('killed after every step in turn, a rerun resumes and completes with every key and a higher revision', async () => {
    sb = reload(sb);
    await writeKeys(sb.endpoints(), 500, 'k/', 64, 3_000);
    await settled(sb);
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const plan = json(await cli('quorum', '--dry-run', '-o', 'json'));
    const stepIds: string[] = plan.steps.map((s: { id: string }) => s.id);
    assert.ok(stepIds.length >= 11);
    let expected = 3_500;
    for (const [i, step] of stepIds.entries()) {
      sb = reload(sb);
      if (i > 0) {
        // A new disaster for each round: two members lose their disks again.
        await writeKeys(sb.endpoints(), 10, 'k/', 64, expected);
        expected += 10;
        await settled(sb);
        await destroyMembers(sb, ['etcd-0', 'etcd-1']);
      }
      const floor = (await readMember(reload(sb).member('etcd-2').clientURL)).revision;
      const crashed = await runCli(['quorum', '--yes', '--sandbox-dir', sb.dir], { env: { ETCD_RECOVER_FAULT_AFTER_STEP: step } });
      assert.notEqual(crashed.code, 0, `the run was killed after ${step}`);
      const rerun = await cli('quorum', '--yes', '-o', 'json');
      assert.equal(rerun.code, 0, `rerun after a crash at ${step}: ${rerun.stderr}`);
      const report = json(rerun);
      assert.equal(report.resumed, true, `resumed after ${step}`);
      assert.match(rerun.stderr, new RegExp(`resuming recovery ${report.id}`));
      await assertRestored(reload(sb), expected, floor + 1);
    }
  });

  it('with no member left, restores the newest verified backup; keys after it are reported lost', async () => {
    sb = reload(sb);
    const backup = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    await writeKeys(sb.endpoints(), 100, 'after/');
    const floor = (await readMember(sb.member('etcd-0').clientURL)).revision;
    await destroyMembers(sb, ['etcd-0', 'etcd-1', 'etcd-2']);
    const plan = json(await cli('quorum', '--dry-run', '-o', 'json'));
    assert.equal(plan.restorePoint.kind, 'backup');
    assert.equal(plan.restorePoint.name, backup.name);
    const r = await cli('quorum', '--yes', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    await assertRestored(reload(sb), backup.userKeys!, floor + 1, '');
    assert.equal(Object.keys((await readMember(reload(sb).member('etcd-1').clientURL, 'after/')).keys).length, 0);
  });

  it('a deliberate rollback to an older backup stays: the restored cluster is backed up, and the next restore picks that backup, not the newer one from before', async () => {
    sb = reload(sb);
    const older = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    await writeKeys(sb.endpoints(), 50, 'undo/');
    const newer = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    await destroyMembers(sb, ['etcd-0', 'etcd-1', 'etcd-2']);
    const r = await cli('quorum', '--yes', '--snapshot', older.name, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const report = json(r);
    assert.ok(report.backupAfter?.name, JSON.stringify(report));
    assert.match(r.stderr, /backed up the restored cluster: /);
    const list = json(await cli('backup', 'list', '-o', 'json')).snapshots as (SnapshotRecord & { trusted: boolean })[];
    const after = list.find((s) => s.name === report.backupAfter.name)!;
    assert.deepEqual(after.labels, { reason: 'post-recovery', recovery: report.id, 'restored-from': older.name });
    assert.ok(after.trusted, 'the backup of the restored cluster is trusted');
    assert.equal(after.userKeys, older.userKeys);
    assert.ok(after.revision > newer.revision, 'above every revision from before (the bump)');
    // Every member lost again: the restore goes to the rolled-back data, not to `newer`.
    await destroyMembers(reload(sb), ['etcd-0', 'etcd-1', 'etcd-2']);
    const plan = json(await cli('quorum', '--dry-run', '-o', 'json'));
    assert.equal(plan.restorePoint.name, after.name, `${plan.restorePoint.name}, not ${newer.name}`);
    assert.equal((await cli('quorum', '--yes')).code, 0);
    assert.equal(Object.keys((await readMember(reload(sb).member('etcd-0').clientURL, 'undo/')).keys).length, 0);
  });

  it('a corrupt restore point is refused before anything is stopped (exit 3)', async () => {
    sb = reload(sb);
    const good = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    const store = storeFor(sb);
    const key = layout.snapshotObject('quorum-it', good.name);
    const chunks: Buffer[] = [];
    for await (const c of store.get(key)) chunks.push(c);
    const bytes = Buffer.concat(chunks);
    bytes[4096 * 2 + 200]! ^= 0xff;
    await store.put(key, bytes, { contentType: 'application/octet-stream' });
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const r = await cli('quorum', '--yes', '--snapshot', good.name);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /corrupt|sha256/);
    const after = reload(sb);
    assert.ok(after.isRunning('etcd-2'), 'the survivor was not stopped');
    assert.ok(existsSync(`${after.member('etcd-2').dataDir}/member`), 'its data is untouched');
    // The failed recovery is resumable or can be restarted with another restore point.
    const fixed = await cli('quorum', '--yes', '--restart');
    assert.equal(fixed.code, 0, fixed.stderr);
  });

  it('a backup of another cluster is refused unless forced (exit 3)', async () => {
    sb = reload(sb);
    const other = await startSandbox({ members: 1, cluster: 'other' });
    try {
      const foreign = json<SnapshotRecord>(await runCli(['backup', 'create', '-o', 'json', '-q', '--sandbox-dir', other.dir]));
      // Someone copies it into this cluster's folder, record and all.
      const from = storeFor(other);
      const to = storeFor(sb);
      const chunks: Buffer[] = [];
      for await (const c of from.get(layout.snapshotObject('other', foreign.name))) chunks.push(c);
      await to.put(layout.snapshotObject('quorum-it', foreign.name), Buffer.concat(chunks), { contentType: 'application/octet-stream' });
      await to.put(layout.snapshotRecord('quorum-it', foreign.name), JSON.stringify({ ...foreign, cluster: 'quorum-it' }));
      await destroyMembers(sb, ['etcd-0', 'etcd-1']);
      const r = await cli('quorum', '--yes', '--snapshot', foreign.name);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /belongs to another cluster: its etcd cluster ID [0-9a-f]+ is not this cluster's/);
      assert.ok(reload(sb).isRunning('etcd-2'));
      const ok = await cli('quorum', '--yes');
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      await stopSandbox(other);
    }
  });

  it('another recovery holding the lock is named and the second run refuses (exit 7)', async () => {
    sb = reload(sb);
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const holder: ChildProcess = spawn('sleep', ['60']);
    try {
      const startedAt = new Date().toISOString();
      const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      await storeFor(sb).put(layout.lock('quorum-it'), JSON.stringify({ runId: 'run-other', host: hostname(), bootId, pid: holder.pid, recoveryId: 'rec-other', kind: 'quorum', command: 'quorum', startedAt, heartbeatAt: startedAt }), { ifNoneMatch: true });
      const r = await cli('quorum', '--yes');
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.stderr, new RegExp(`rec-other by pid ${holder.pid} on ${hostname()}, started ${startedAt.replace(/[.]/g, '\\.')}`));
    } finally {
      holder.kill();
      await new Promise((r) => holder.once('exit', r));
    }
    // Its holder gone (this host, this boot, its process dead), the lock is taken over at once.
    const r = await cli('quorum', '--yes');
    assert.equal(r.code, 0, r.stderr);
  });

  it('two quorum runs started together: exactly one recovers, the other is refused', async () => {
    sb = reload(sb);
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const [a, b] = await Promise.all([cli('quorum', '--yes'), cli('quorum', '--yes')]);
    const codes = [a.code, b.code].sort();
    assert.equal(codes[0], 0, a.stderr + b.stderr);
    // The loser either met the lock (7) or, starting after the winner finished, a healthy cluster (9).
    assert.ok([7, 9].includes(codes[1]!), `second run exit ${codes[1]}: ${a.stderr}${b.stderr}`);
    const counts = await Promise.all(reload(sb).state.members.map(async (m) => Object.keys((await readMember(m.clientURL)).keys).length));
    assert.ok(counts[0]! > 0 && counts.every((c) => c === counts[0]), `members agree: ${counts.join(', ')}`);
  });

  it('an S3 outage mid-download is survived: the download resumes where it broke', async () => {
    sb = reload(sb);
    await writeKeys(sb.endpoints(), 20_000, 'big/', 256);
    const backup = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    assert.ok(backup.objectSize > 4 * 1024 * 1024);
    const proxy = await startFlakyS3Proxy(sb.state.minio.url, { cutGetsOfSuffix: '.db', cutAfterBytes: 1024 * 1024, cuts: 2 });
    try {
      await destroyMembers(sb, ['etcd-0', 'etcd-1', 'etcd-2']);
      const r = await cli('quorum', '--yes', '--snapshot', backup.name, '--s3-endpoint', proxy.url, '-o', 'json');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(proxy.cutsMade(), 2, 'the proxy really cut the download twice');
      assert.match(r.stderr, /resuming, attempt/);
      for (const m of reload(sb).state.members) assert.equal(await countOnMember(m.clientURL, 'big/'), 20_000);
    } finally {
      await proxy.close();
    }
  });

  it('a member that will not start after the restore: clear error, old data set aside; fixed, the rerun finishes', async () => {
    sb = reload(sb);
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    // Something else holds etcd-1's peer port: it cannot start.
    const port = Number(new URL(sb.member('etcd-1').peerURL).port);
    const sockets = new Set<import('node:net').Socket>();
    const squatter: Server = createTcpServer((sock) => {
      // Peers keep connecting to the squatted port: hold and later drop them.
      sockets.add(sock);
      sock.on('error', () => undefined);
    });
    // The killed member's old connections may hold the port for a moment (FIN_WAIT): retry the bind.
    for (let attempt = 0; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => {
          squatter.once('error', reject);
          squatter.listen(port, '127.0.0.1', resolve);
        });
        break;
      } catch (e) {
        if (attempt > 100) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    let id: string;
    try {
      const r = await cli('quorum', '--yes', '--timeout', '8');
      assert.equal(r.code, 10, r.stderr);
      assert.match(r.stderr, /stopped at step "wait-healthy": member\(s\) etcd-1 \(exited: .*address already in use.*\) did not become healthy within 8 s/);
      assert.match(r.stderr, /Old data is kept at: .*etcd-0\/data\.before-rec-/);
      assert.match(r.stderr, /rerun the same command to resume/);
      id = /recovery (rec-[^ ]+) stopped/.exec(r.stderr)![1]!;
      assert.ok(existsSync(`${sb.member('etcd-2').dataDir}.before-${id}`));
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => squatter.close(r));
    }
    // The port is free again: the same command resumes, starts etcd-1 again and finishes.
    const r = await cli('quorum', '--yes', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(json(r).id, id);
  });

  it('a member that dies after the cluster came back: the rerun sees it, starts it again and finishes', async () => {
    sb = reload(sb);
    await settled(sb);
    const keys = Object.keys((await readMember(sb.member('etcd-2').clientURL)).keys).length;
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const floor = (await readMember(reload(sb).member('etcd-2').clientURL)).revision;
    const crashed = await runCli(['quorum', '--yes', '--sandbox-dir', sb.dir], { env: { ETCD_RECOVER_FAULT_AFTER_STEP: 'verify-restored' } });
    assert.notEqual(crashed.code, 0, crashed.stderr);
    // The run died in its last step: its journal says the cluster became healthy. Then etcd-0 dies
    // (its restored data stays).
    sb = reload(sb);
    await sb.stopMember('etcd-0', { kill: true });
    const r = await cli('quorum', '--yes', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(json(r).resumed, true);
    assert.match(r.stderr, /wait until every member is healthy with one leader: done in an earlier run, but no longer so; doing it again/);
    await assertRestored(reload(sb), keys, floor + 1);
  });

  it('no backup and no surviving member: nothing to restore from (exit 4)', async () => {
    sb = reload(sb);
    await destroyMembers(sb, ['etcd-0', 'etcd-1', 'etcd-2']);
    const r = await cli('quorum', '--yes', '--cluster', 'never-backed-up');
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /no verified backup of cluster never-backed-up .* and no surviving member with data/);
    // Restore properly so later suites start from a healthy cluster.
    assert.equal((await cli('quorum', '--yes')).code, 0);
  });
});

