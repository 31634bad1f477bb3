import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Journal, Sandbox as SandboxClass, type Sandbox } from '@etcd-recover/core';
import { runCli } from '../support/cli.js';
import { destroyMembers, readMember, startSandbox, stopSandbox, storeFor, writeKeys } from '../support/sandbox.js';

const reload = (sb: Sandbox) => SandboxClass.load(sb.dir)!;

/**
 * Space before destruction, on the sandbox: a lost member's folder sits on a real, small filesystem (a
 * tmpfs mounted over it), too small for the restore's new data (restored DB + a preallocated 64 MiB
 * WAL segment). `quorum` refuses with the numbers before anything is stopped; with room, the same
 * command resumes and restores.
 */
describe('a volume too small for the restore (sandbox)', function () {
  this.timeout(600_000);
  let sb: Sandbox;
  let mounted: string | undefined;
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir], { timeoutMs: 300_000 });

  before(async () => {
    // A missing privilege is a failure, never a skip (npm test runs as root, like the control-plane harness).
    if (process.getuid?.() !== 0) throw new Error('this test mounts a small tmpfs: it needs root');
    sb = await startSandbox({ members: 3, cluster: 'space-it' });
    await writeKeys(sb.endpoints(), 2_000, 'k/');
  });
  after(async () => {
    if (mounted) execFileSync('umount', ['-l', mounted]);
    await stopSandbox(sb);
  });

  it('is refused with the volume, needed and free bytes, before anything is stopped; with room the rerun restores', async () => {
    await destroyMembers(sb, ['etcd-0', 'etcd-1']);
    const dir = dirname(sb.member('etcd-0').dataDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', dir]);
    mounted = dir;
    const survivor = reload(sb).member('etcd-2');
    const before = await readMember(survivor.clientURL);

    const r = await cli('quorum', '--yes');
    assert.equal(r.code, 11, r.stderr);
    const m = new RegExp(`filesystem of ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(etcd-0\\) needs (\\d+) bytes \\(restored DB (\\d+) \\+ WAL (\\d+); old data stays set aside in place\\) but has (\\d+) bytes free`).exec(r.stderr);
    assert.ok(m, r.stderr);
    const [need, db, wal, free] = m.slice(1).map(Number) as [number, number, number, number];
    assert.equal(need, db + wal);
    assert.ok(db > 0 && wal === 64 * 1024 * 1024);
    assert.ok(free <= 8 * 1024 * 1024 && free < need, `${free} < ${need}`);
    assert.match(r.stderr, /nothing was stopped or changed/);

    // Nothing stopped, nothing moved: the survivor runs on its data, no data dir was set aside.
    const after = reload(sb);
    assert.ok(after.isRunning('etcd-2'), 'the survivor was not stopped');
    assert.equal((await readMember(survivor.clientURL)).revision, before.revision);
    for (const name of ['etcd-0', 'etcd-1', 'etcd-2']) {
      const d = dirname(after.member(name).dataDir);
      assert.deepEqual(readdirSync(d).filter((f) => f.includes('.before-') || f.includes('.restoring-')), [], `${name}: nothing set aside`);
    }
    assert.ok(existsSync(`${survivor.dataDir}/member`));
    const open = await Journal.findOpen(storeFor(sb), 'space-it');
    assert.ok(open, 'the journal is kept');
    assert.equal(open!.step('check-space').state, 'failed');
    assert.equal(open!.step('stop-members').state, 'pending');

    // Room made (the small filesystem goes away): the same command resumes and completes.
    execFileSync('umount', [dir]);
    mounted = undefined;
    const ok = await cli('quorum', '--yes', '-o', 'json');
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /resuming recovery/);
    for (const mem of reload(sb).state.members) {
      const { keys } = await readMember(mem.clientURL, 'k/');
      assert.equal(Object.keys(keys).length, 2_000, mem.name);
    }
  });
});
