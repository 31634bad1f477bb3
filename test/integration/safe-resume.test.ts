import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { layout, RecoveryLock, Sandbox as SandboxClass, type Sandbox } from '@etcd-recover/core';
import { json, pluginBin, runCli } from '../support/cli.js';
import { countOnMember, readMember, startSandbox, stopSandbox, storeFor, writeKeys } from '../support/sandbox.js';

const CLUSTER = 'resume-it';
const reload = (sb: Sandbox) => SandboxClass.load(sb.dir)!;

async function journalOf(sb: Sandbox, id: string) {
  return JSON.parse((await storeFor(sb).read(layout.recoveryJournal(CLUSTER, id)))!.body.toString());
}

async function openJournalId(sb: Sandbox): Promise<string | undefined> {
  const ids: string[] = [];
  for await (const o of storeFor(sb).list(layout.recoveriesPrefix(CLUSTER))) ids.push(o.key.split('/').pop()!.replace(/\.json$/, ''));
  for (const id of ids.sort().reverse()) {
    const j = await journalOf(sb, id);
    if (j.status === 'running' || j.status === 'failed') return id;
  }
  return undefined;
}

/** Until the member answers a status call (with or without a leader). */
async function waitAnswers(endpoint: string): Promise<void> {
  for (let i = 0; i < 60; i++) {
    if (await readMember(endpoint).then(() => true, () => false)) return;
    await sleep(250);
  }
  throw new Error(`${endpoint} never answered`);
}

/** Stops members' processes, keeping their data (a crash, not a lost disk). */
async function crash(sb: Sandbox, names: string[]): Promise<void> {
  const s = reload(sb);
  for (const n of names) await s.stopMember(n, { kill: true });
}

async function startAgain(sb: Sandbox, names: string[]): Promise<void> {
  const s = reload(sb);
  for (const n of names) s.startMember(n, 'new');
  for (const n of names) await waitAnswers(s.member(n).clientURL);
}

describe('recoveries that cannot surprise: stale journals, a lost lock', function () {
  this.timeout(600_000);
  let sb: Sandbox;
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli([...args, '--sandbox-dir', sb.dir], { env });

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: CLUSTER });
    await writeKeys(sb.endpoints(), 1_000, 'k/');
  });
  after(async () => stopSandbox(sb));

  let staleId: string;
  it('a stale journal is shown, refuses a conflicting --snapshot, and is not resumed onto a cluster whose quorum came back', async () => {
    const keysBefore = await countOnMember(sb.member('etcd-0').clientURL, 'k/');
    const made = await cli(['backup', 'create', '-o', 'json']);
    assert.equal(made.code, 0, made.stderr);
    const named = json(made).name as string;
    await crash(sb, ['etcd-0', 'etcd-1']);
    // The first attempt dies after verifying its restore point (before anything is stopped).
    const died = await cli(['quorum', '--yes'], { ETCD_RECOVER_FAULT_AFTER_STEP: 'stage-snapshot' });
    assert.notEqual(died.code, 0);
    staleId = (await openJournalId(sb))!;
    assert.ok(staleId, 'an unfinished journal');

    const conflicting = await cli(['quorum', '--yes', '--snapshot', named]);
    assert.equal(conflicting.code, 9, conflicting.stderr);
    assert.match(conflicting.stderr, new RegExp(`asks for something else than the unfinished quorum recovery ${staleId}`));
    assert.match(conflicting.stderr, new RegExp(`--snapshot ${named}, but it restores a live snapshot of etcd-2`));
    assert.match(conflicting.stderr, /--abandon/);
    const bump = await cli(['quorum', '--yes', '--bump-revision', '7']);
    assert.equal(bump.code, 9, bump.stderr);
    assert.match(bump.stderr, /--bump-revision 7, but it bumps by/);

    // Quorum is back before anyone resumed: the old plan must not run.
    await startAgain(sb, ['etcd-0', 'etcd-1']);
    await reload(sb).waitHealthy();
    const resumed = await cli(['quorum', '--yes']);
    assert.equal(resumed.code, 9, resumed.stderr);
    assert.match(resumed.stderr, /quorum holds now/);
    assert.match(resumed.stderr, new RegExp(`unfinished quorum recovery ${staleId} \\(running\\), started .* ago\\): restore point live snapshot of etcd-2`));
    assert.match(resumed.stderr, /nothing changed yet/);
    for (const m of reload(sb).state.members) {
      assert.ok(reload(sb).isRunning(m.name), `${m.name} still runs`);
      assert.equal(await countOnMember(m.clientURL, 'k/'), keysBefore, `${m.name} keeps its keys`);
      assert.ok(!existsSync(`${m.dataDir}.before-${staleId}`), 'nothing set aside');
    }

    const abandoned = await cli(['quorum', '--abandon', 'quorum came back on its own', '-o', 'json']);
    assert.equal(abandoned.code, 0, abandoned.stderr);
    const j = await journalOf(sb, staleId);
    assert.equal(j.status, 'abandoned');
    assert.equal(j.abandoned.reason, 'quorum came back on its own');
    assert.equal(await openJournalId(sb), undefined);
    const fresh = await cli(['quorum', '--yes']);
    assert.equal(fresh.code, 9);
    assert.match(fresh.stderr, /quorum still holds/);
    assert.doesNotMatch(fresh.stderr, /unfinished/);
  });

  it('a run that loses the lock mid-run stops before its next destructive step and does not overwrite the journal', async () => {
    const keysBefore = await countOnMember(sb.member('etcd-0').clientURL, 'k/');
    await crash(sb, ['etcd-0', 'etcd-1']);
    const env = { ...process.env, ETCD_RECOVER_SANDBOX: '/nonexistent-sandbox', ETCD_RECOVER_LOCK_STALE_SECONDS: '3', ETCD_RECOVER_FAULT_PAUSE_AFTER_STEP: 'check-space:12000' };
    const child = spawn(pluginBin, ['quorum', '--yes', '--sandbox-dir', sb.dir], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number>((res) => child.on('close', (c) => res(c ?? -1)));
    for (let i = 0; i < 240 && !/fault injection: pausing/.test(stderr); i++) await sleep(250);
    assert.match(stderr, /fault injection: pausing/);
    child.kill('SIGSTOP'); // frozen: a paused VM, a long GC, a laptop lid closed
    const id = (await openJournalId(sb))!;

    // Another run takes the lock over once the bucket's clock says it is stale.
    const taker = new RecoveryLock(storeFor(sb), CLUSTER, { staleAfterMs: 3_000 });
    let took: { previous?: { runId: string } } | undefined;
    for (let i = 0; i < 40 && !took; i++) {
      await sleep(500);
      took = await taker.acquire(id, 'quorum', 'test taker').catch(() => undefined);
    }
    assert.ok(took?.previous, 'taken over');
    // status names who holds the lock now and the unfinished recovery.
    const st = json(await cli(['status', '-o', 'json']));
    assert.equal(st.lock.holder.runId, taker.runId);
    assert.equal(st.unfinished.id, id);
    child.kill('SIGCONT');
    const code = await exited;
    assert.equal(code, 7, stderr);
    assert.match(stderr, /no longer holds the recovery lock/);
    // Nothing destructive ran: the survivor still runs on its data, and the journal says so.
    assert.ok(reload(sb).isRunning('etcd-2'), 'etcd-2 was not stopped');
    assert.equal(await countOnMember(sb.member('etcd-2').clientURL, 'k/'), keysBefore);
    const j = await journalOf(sb, id);
    assert.equal(j.steps.find((s: { id: string }) => s.id === 'stop-members').state, 'pending');
    assert.equal(j.status, 'running', 'the run that lost the lock did not write its failure over the journal');
    await taker.release();

    // With the lock free again, the same command resumes and finishes the recovery.
    const rerun = await cli(['quorum', '--yes', '-o', 'json']);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.equal(json(rerun).id, id);
    for (const m of reload(sb).state.members) assert.equal(await countOnMember(m.clientURL, 'k/'), keysBefore, m.name);
  });

  it('an unfinished member replace blocks other recoveries until resumed or abandoned with a reason', async () => {
    await crash(sb, ['etcd-0']);
    const died = await cli(['member', 'replace', 'etcd-0', '--yes'], { ETCD_RECOVER_FAULT_AFTER_STEP: 'stop-members' });
    assert.notEqual(died.code, 0);
    const id = (await openJournalId(sb))!;
    const other = await cli(['member', 'replace', 'etcd-1', '--yes']);
    assert.equal(other.code, 9, other.stderr);
    assert.match(other.stderr, new RegExp(`unfinished member-replace recovery ${id}`));
    const q = await cli(['quorum', '--yes']);
    assert.equal(q.code, 9, q.stderr);
    assert.match(q.stderr, /must finish first/);
    const empty = await cli(['member', 'replace', 'etcd-0', '--abandon', '  ']);
    assert.equal(empty.code, 2, empty.stderr);
    const abandoned = await cli(['member', 'replace', 'etcd-0', '--abandon', 'disk swapped by hand']);
    assert.equal(abandoned.code, 0, abandoned.stderr);
    assert.equal((await journalOf(sb, id)).abandoned.reason, 'disk swapped by hand');
    // Closed, it no longer blocks: the same replacement can be planned anew.
    const replaced = await cli(['member', 'replace', 'etcd-0', '--yes', '-o', 'json']);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.notEqual(json(replaced).id, id);
  });
});
