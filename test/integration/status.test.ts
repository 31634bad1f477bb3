import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { layout, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { json, pluginBin, runCli } from '../support/cli.js';
import { startSandbox, stopSandbox, storeFor } from '../support/sandbox.js';

const CLUSTER = 'status-it';
const codes = (st: { health: { findings: { code: string }[] } }) => st.health.findings.map((f) => f.code);

describe('status for machines: exit codes, health findings, timeline, --watch (real 3-member etcd)', function () {
  this.timeout(300_000);
  let sb: Sandbox;
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli([...args, '--sandbox-dir', sb.dir], { env });

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: CLUSTER });
  });
  after(async () => stopSandbox(sb));

  it('no backup at all: RPO breached (exit 20), in health and in the table; --no-fail exits 0', async () => {
    const r = await cli(['status', '-o', 'json']);
    assert.equal(r.code, 20, r.stderr);
    const st = json(r);
    assert.equal(st.healthy, 3);
    assert.deepEqual(st.health, { ok: false, exitCode: 20, findings: [{ code: 'RPO_BREACHED', exitCode: 20, message: 'no verified backup: RPO 1h not met' }] });
    assert.deepEqual(st.backups.timeline, []);
    const table = await cli(['status']);
    assert.equal(table.code, 20, table.stderr);
    assert.match(table.stdout, /^health: 1 finding\(s\), exit 20\n {2}20 RPO_BREACHED: no verified backup: RPO 1h not met$/m);
    assert.equal((await cli(['status', '--no-fail'])).code, 0);
  });

  let first: SnapshotRecord;

  it('healthy with a fresh verified backup: exit 0, health.ok, the timeline shows it', async () => {
    const c = await cli(['backup', 'create', '-o', 'json', '-q']);
    assert.equal(c.code, 0, c.stderr);
    first = json<SnapshotRecord>(c);
    const r = await cli(['status', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const st = json(r);
    assert.deepEqual(st.health, { ok: true, exitCode: 0, findings: [] });
    assert.deepEqual(st.backups.timeline.map((t: { name: string; result: string }) => [t.name, t.result]), [[first.name, 'verified']]);
    const utf8 = await cli(['status'], { LANG: 'C.UTF-8', LC_ALL: '', LC_CTYPE: '', NO_COLOR: '' });
    assert.equal(utf8.code, 0, utf8.stderr);
    assert.match(utf8.stdout, /^backups \(newest first\): ✓\d+s$/m);
    assert.match(utf8.stdout, /^health: ok$/m);
    const ascii = await cli(['status'], { LANG: 'C.UTF-8', NO_COLOR: '1' });
    assert.match(ascii.stdout, /^backups \(newest first\): ok:\d+s$/m);
  });

  it('an old backup against a small --rpo: exit 20 naming the backup', async () => {
    await new Promise((r) => setTimeout(r, 1_100));
    const r = await cli(['status', '--rpo', '1s', '-o', 'json']);
    assert.equal(r.code, 20, r.stderr);
    const f = json(r).health.findings;
    assert.equal(f.length, 1);
    assert.equal(f[0].code, 'RPO_BREACHED');
    assert.match(f[0].message, new RegExp(`^newest verified backup ${first.name} is \\d+s old: RPO 1s not met$`));
  });

  it('--watch -o json prints one JSON document per line until SIGINT, and exits with the last observation\'s code', async () => {
    const child = spawn(pluginBin, ['status', '--watch', '--interval', '1', '--rpo', '1s', '-o', 'json', '--sandbox-dir', sb.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((res) => child.on('close', res));
    // Until three observations are out (a slow start-up must not make this flaky), then interrupt.
    const deadline = Date.now() + 60_000;
    while (stdout.split('\n').filter(Boolean).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    const code = await exited;
    const lines = stdout.split('\n').filter(Boolean);
    assert.ok(lines.length >= 3, `${lines.length} lines:\n${stdout}\n${stderr}`);
    for (const l of lines) {
      const st = JSON.parse(l);
      assert.equal(st.cluster, CLUSTER);
      assert.deepEqual(codes(st), ['RPO_BREACHED']);
    }
    assert.equal(code, 20, stderr);
  });

  it('the newest verification failed (a flipped byte, then backup verify): exit 21, and the RPO finding listed after it', async () => {
    const store = storeFor(sb);
    const key = layout.snapshotObject(CLUSTER, first.name);
    const chunks: Buffer[] = [];
    for await (const c of store.get(key)) chunks.push(c);
    const bytes = Buffer.concat(chunks);
    bytes[4096 * 2 + 200]! ^= 0xff;
    await store.put(key, bytes, { contentType: 'application/octet-stream' });
    store.destroy();
    const v = await cli(['backup', 'verify', first.name, '-q']);
    assert.equal(v.code, 3, v.stderr);
    const r = await cli(['status', '-o', 'json']);
    assert.equal(r.code, 21, r.stderr);
    const st = json(r);
    assert.equal(st.health.exitCode, 21);
    assert.deepEqual(codes(st), ['VERIFICATION_FAILED', 'RPO_BREACHED'], 'most severe first, all listed');
    assert.match(st.health.findings[0].message, new RegExp(`^newest verification \\(backup ${first.name}, by verify at [^)]+\\) failed: `));
    assert.equal(st.backups.timeline[0].result, 'failed');
    const table = await cli(['status'], { LANG: 'C', LC_ALL: '' });
    assert.match(table.stdout, /^backups \(newest first\): FAIL:\d+s$/m);
    assert.match(table.stdout, /^ {2}21 VERIFICATION_FAILED: .*\n {2}20 RPO_BREACHED: /m);
  });

  it('a member down: exit 22 over everything else; all members down is one finding', async () => {
    const c = await cli(['backup', 'create', '-o', 'json', '-q']);
    assert.equal(c.code, 0, c.stderr);
    const fresh = json<SnapshotRecord>(c);
    assert.equal((await cli(['status'])).code, 0, 'a fresh verified backup heals the verification and RPO findings');
    await sb.stopMember('etcd-1');
    const r = await cli(['status', '-o', 'json']);
    assert.equal(r.code, 22, r.stderr);
    const st = json(r);
    assert.equal(st.quorum, true);
    assert.equal(st.health.findings.length, 1);
    assert.equal(st.health.findings[0].code, 'MEMBER_DOWN');
    assert.match(st.health.findings[0].message, /^member etcd-1 is down: /);
    assert.deepEqual(st.backups.timeline.map((t: { name: string; result: string }) => [t.name, t.result]), [[fresh.name, 'verified'], [first.name, 'failed']]);
    // A member down and an RPO breach: both printed, 22 wins.
    const both = await cli(['status', '--rpo', '1s', '-o', 'json']);
    assert.equal(both.code, 22, both.stderr);
    assert.deepEqual(codes(json(both)), ['MEMBER_DOWN', 'RPO_BREACHED']);
    await Promise.all([sb.stopMember('etcd-0', { kill: true }), sb.stopMember('etcd-2', { kill: true })]);
    const all = await cli(['status', '-o', 'json']);
    assert.equal(all.code, 22, all.stderr);
    const a = json(all);
    assert.equal(a.quorum, false);
    assert.deepEqual(a.health.findings, [{ code: 'MEMBER_DOWN', exitCode: 22, message: 'all 3 members are down or unreachable' }]);
    assert.equal((await cli(['status', '--no-fail'])).code, 0);
  });
});
