import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { json, pluginBin, runCli } from '../support/cli.js';
import { freePort, waitFor } from '../support/ports.js';
import { startSandbox, stopSandbox, writeKeys } from '../support/sandbox.js';
import { parseExposition } from '../core/observability/metrics.test.js';

describe('agent exporter: Prometheus metrics of a real 3-member sandbox', function () {
  this.timeout(300_000);
  let sb: Sandbox;
  let exporter: ChildProcess;
  let url: string;
  let stderr = '';
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);

  /** One scrape; `v(name, labels)` is the value of the first sample matching the labels. */
  async function scrape() {
    const res = await fetch(`${url}/metrics`);
    assert.equal(res.status, 200, stderr);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const fams = parseExposition(await res.text());
    return {
      has: (name: string) => fams.has(`etcd_recover_${name}`),
      v: (name: string, labels: Record<string, string> = {}) =>
        fams.get(`etcd_recover_${name}`)?.samples.find((s) => Object.entries({ cluster: 'exporter-it', ...labels }).every(([k, x]) => s.labels[k] === x))?.value,
    };
  }

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: 'exporter-it' });
    await writeKeys(sb.endpoints(), 500, 'k/', 16);
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    exporter = spawn(pluginBin, ['agent', 'exporter', '--listen', `127.0.0.1:${port}`, '--refresh', '0', '--timeout', '3', '--rpo', '1h', '--sandbox-dir', sb.dir], {
      env: { ...process.env, ETCD_RECOVER_SANDBOX: '/nonexistent-sandbox' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    exporter.stderr!.on('data', (d) => (stderr += d));
    await waitFor('the exporter to serve /healthz', async () => exporter.exitCode === null && (await fetch(`${url}/healthz`)).ok, 60_000);
  });
  after(async () => {
    if (exporter && exporter.exitCode === null) {
      const exited = new Promise((r) => exporter.once('exit', r));
      exporter.kill('SIGTERM');
      await exited;
    }
    await stopSandbox(sb);
  });

  it('before any backup: members, quorum and the bucket are up, no backup gauges, RPO not met', async () => {
    const { v, has } = await scrape();
    assert.equal(v('bucket_up'), 1, stderr);
    assert.equal(v('etcd_up'), 1);
    assert.equal(v('quorum'), 1);
    for (const m of ['etcd-0', 'etcd-1', 'etcd-2']) assert.equal(v('member_up', { member: m }), 1, m);
    assert.equal(['etcd-0', 'etcd-1', 'etcd-2'].reduce((n, m) => n + v('member_is_leader', { member: m })!, 0), 1, 'exactly one leader');
    assert.ok(v('member_db_size_bytes', { member: 'etcd-0' })! > 0);
    for (const n of ['backup_last_timestamp_seconds', 'backup_last_revision', 'backup_last_size_bytes', 'backup_last_keys', 'backup_last_verified_timestamp_seconds']) assert.equal(has(n), false, n);
    assert.equal(v('rpo_met'), 0);
    assert.equal(v('rpo_target_seconds'), 3600);
    assert.equal(v('backups', { state: 'trusted' }), 0);
    assert.equal(v('recovery_in_progress'), 0);
    assert.equal(v('exporter_scrape_errors_total', { source: 'bucket' }), 0);
    assert.equal((await fetch(`${url}/nothing`)).status, 404);
  });

  let rec: SnapshotRecord;
  it('after a good backup create: the newest backup\'s gauges equal its record, RPO met', async () => {
    const r = await cli('backup', 'create', '-o', 'json', '-q');
    assert.equal(r.code, 0, r.stderr);
    rec = json<SnapshotRecord>(r);
    const { v } = await scrape();
    assert.equal(v('backup_last_revision'), rec.revision);
    assert.equal(v('backup_last_keys'), rec.userKeys ?? rec.totalKeys);
    assert.ok(v('backup_last_keys')! >= 500);
    assert.equal(v('backup_last_size_bytes'), rec.dbSize);
    assert.equal(v('backup_last_timestamp_seconds'), Date.parse(rec.createdAt) / 1000);
    assert.equal(v('backup_last_verified_timestamp_seconds'), Date.parse(rec.createdAt) / 1000);
    assert.equal(v('backups', { state: 'trusted' }), 1);
    assert.equal(v('rpo_met'), 1);
    assert.equal(v('job_consecutive_failures', { job: 'backup' }), 0);
    assert.equal(v('job_consecutive_failures', { job: 'verify' }), 0);
  });

  it('with the bucket down a backup fails; the scrape still answers: bucket_up 0, the last good values kept, the error counted; back when it returns', async () => {
    const before = Date.now() / 1000;
    const pid = sb.state.minio!.pid!;
    process.kill(-pid, 'SIGKILL');
    await waitFor('MinIO to exit', async () => !isAlive(pid), 10_000, 50);
    const failed = await cli('backup', 'create', '-q');
    assert.notEqual(failed.code, 0, 'backup create fails without its bucket');
    const { v } = await scrape();
    assert.equal(v('bucket_up'), 0, stderr);
    assert.equal(v('etcd_up'), 1);
    assert.equal(v('backup_last_revision'), rec.revision, 'kept');
    assert.equal(v('backup_last_timestamp_seconds'), Date.parse(rec.createdAt) / 1000, 'kept');
    assert.ok(v('bucket_last_success_timestamp_seconds')! <= before, 'the kept values say how old they are');
    assert.ok(v('exporter_scrape_errors_total', { source: 'bucket' })! >= 1);
    assert.match(stderr, /bucket: /, 'the exporter logged why');

    await sb.startMinio();
    const again = await scrape();
    assert.equal(again.v('bucket_up'), 1, stderr);
    assert.ok(again.v('bucket_last_success_timestamp_seconds')! > before);
  });

  it('a stopped member is member_up 0 while quorum holds', async () => {
    const s0 = await scrape();
    const wasLeader = s0.v('member_is_leader', { member: 'etcd-1' }) === 1;
    await sb.stopMember('etcd-1');
    const s = await waitFor('a leader among the survivors', async () => {
      const x = await scrape();
      return x.v('quorum') === 1 && x;
    }, 30_000);
    assert.equal(s.v('member_up', { member: 'etcd-1' }), 0);
    assert.equal(s.v('member_is_leader', { member: 'etcd-1' }), 0);
    assert.equal(s.v('member_up', { member: 'etcd-0' }), 1);
    assert.ok(s.v('member_db_size_bytes', { member: 'etcd-1' })! > 0, 'its last size is kept');
    assert.equal(s.v('etcd_up'), 1);
    if (wasLeader) assert.ok(s.v('leader_changes_total')! >= 1, 'the stopped leader was replaced');
    else assert.equal(s.v('leader_changes_total'), 0, 'no leader change when a follower stops');
  });

  it('stops cleanly on SIGTERM', async () => {
    const exited = new Promise<number | null>((r) => exporter.once('exit', (code) => r(code)));
    exporter.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
  });
});

/** Alive and not a zombie (MinIO is a child of this process until it is reaped). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}
