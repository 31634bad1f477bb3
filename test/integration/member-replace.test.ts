import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sandbox as SandboxClass, type Sandbox } from '@etcd-recover/core';
import { json, runCli } from '../support/cli.js';
import { corruptMember, destroyMembers, readMember, startSandbox, stopSandbox, writeKeys } from '../support/sandbox.js';

const reload = (sb: Sandbox) => SandboxClass.load(sb.dir)!;

describe('member replace on a real 3-member etcd', function () {
  this.timeout(300_000);
  let sb: Sandbox;
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: 'replace-it' });
    await writeKeys(sb.endpoints(), 2_000, 'k/');
  });
  after(async () => stopSandbox(sb));

  it('brings back a member whose data is corrupt (crash-looping), losing nothing', async () => {
    // Corrupt etcd-2's database and restart it: it cannot start.
    await corruptMember(sb, 'etcd-2');
    const status = json(await cli('status', '-o', 'json'));
    assert.equal(status.quorum, true);
    assert.equal(status.healthy, 2);

    const dry = json(await cli('member', 'replace', 'etcd-2', '--dry-run', '-o', 'json'));
    assert.equal(dry.kind, 'member-replace');
    assert.equal(dry.member, 'etcd-2');
    const r = await cli('member', 'replace', 'etcd-2', '--yes', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const report = json(r);
    assert.match(r.stderr, /added etcd-2 as learner [0-9a-f]+/);
    assert.match(r.stderr, /promoted etcd-2 to voting member/);
    // The corrupt data was moved aside, not deleted.
    assert.ok(existsSync(join(`${reload(sb).member('etcd-2').dataDir}.before-${report.id}`, 'member', 'snap', 'db')));
    // etcd-2 now serves every key, member-locally, and all three agree.
    await writeKeys(sb.endpoints(), 10, 'k/', 64, 2_000);
    for (const m of reload(sb).state.members) {
      const deadline = Date.now() + 10_000;
      let n = 0;
      while (Date.now() < deadline && (n = Object.keys((await readMember(m.clientURL)).keys).length) !== 2_010) await sleep(100);
      assert.equal(n, 2_010, `${m.name} has every key`);
    }
    const after = json(await cli('status', '-o', 'json'));
    assert.equal(after.healthy, 3);
    assert.ok(after.members.every((m: { learner: boolean }) => !m.learner));
  });

  it('refuses without a quorum of other members (exit 9) and names the way out', async () => {
    sb = reload(sb);
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    await sleep(1_500);
    const r = await cli('member', 'replace', 'etcd-0', '--yes');
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stderr, /needs a quorum of 2 other healthy members; only \d/);
    assert.match(r.stderr, /kubectl etcd-recover quorum/);
  });

  it('rejects an unknown member name (exit 2)', async () => {
    const r = await cli('member', 'replace', 'etcd-9', '--yes');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no member named etcd-9 \(members: etcd-0, etcd-1, etcd-2\)/);
  });
});
