import { strict as assert } from 'node:assert';
import { AppsV1Api, CoreV1Api, type CoreV1Event } from '@kubernetes/client-node';
import { Catalog, layout, parseContract, S3ObjectStore, type RecoveryContract, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { jobOutcome, runJobFromCronJob } from '@etcd-recover/core/kubernetes';
import { alertRules } from '@etcd-recover/pulumi';
import { waitFor, type ControlPlane } from '../support/kube/index.js';
import { declaredCluster, memberIPs, writeKeys } from '../support/declared-cluster.js';
import { stopSandbox } from '../support/sandbox.js';

const NS = 'hcp-o';
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];

/** Parses Prometheus text exposition into `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}
const metric = (m: Map<string, number>, name: string, labels: Record<string, string> = {}) => {
  for (const [k, v] of m) {
    if (!k.startsWith(`${name}{`) && k !== name) continue;
    if (Object.entries(labels).every(([l, val]) => k.includes(`${l}="${val}"`))) return v;
  }
  return undefined;
};

/**
 * Issue 17 on the real control plane: the exporter Deployment's /metrics before and after a failing
 * backup, the Events on the recovery contract read back through the API server, the recovery-status
 * ConfigMap, and the drill CronJob's Job passing on a good backup and failing on one corrupted in the bucket.
 */
describe('metrics, Events and the scheduled restore drill on Kubernetes (real control plane)', function () {
  this.timeout(900_000);
  let cp: ControlPlane;
  let store: Sandbox;
  let contract: RecoveryContract;
  const bucket = () => new S3ObjectStore(store.s3Config());

  const scrape = async (): Promise<Map<string, number>> => {
    const pods = await cp.kubeConfig().makeApiClient(CoreV1Api).listNamespacedPod({ namespace: NS, labelSelector: 'etcd-recover.io/job=exporter' });
    const ip = pods.items.find((p) => p.status?.phase === 'Running' && p.status.podIP)?.status?.podIP;
    if (!ip) throw new Error('no running exporter pod');
    const res = await fetch(`http://${ip}:9479/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    return parseMetrics(await res.text());
  };
  const events = async (reason: string): Promise<CoreV1Event[]> =>
    (await cp.kubeConfig().makeApiClient(CoreV1Api).listNamespacedEvent({ namespace: NS, fieldSelector: `involvedObject.name=etcd-recovery-contract,reason=${reason}` })).items;
  const status = async (job: string) => {
    const cm = await cp.kubeConfig().makeApiClient(CoreV1Api).readNamespacedConfigMap({ namespace: NS, name: 'etcd-recovery-status' });
    return JSON.parse(cm.data![job]!) as { last: { ok: boolean; reason: string; message: string }; consecutiveFailures: number };
  };
  const runJob = async (cron: string, args?: string[]) => {
    const r = await runJobFromCronJob(cp.kubeConfig(), contract, cron, args, 600_000);
    if (process.env['ETCD_RECOVER_TEST_DEBUG']) process.stderr.write(`--- ${r.job} (${r.succeeded ? 'ok' : 'failed'}):\n${(await jobOutcome(cp.kubeConfig(), NS, r.job)).log ?? ''}\n`);
    return r;
  };
  /** The exporter caches for --refresh (30 s): until a scrape shows what the bucket now holds. */
  const scrapeUntil = async (what: string, cond: (m: Map<string, number>) => boolean): Promise<Map<string, number>> => {
    let last = new Map<string, number>();
    await waitFor(what, async () => cond((last = await scrape())), 90_000, 2_000).catch((e: Error) => {
      throw new Error(`${e.message}; last scrape: ${[...last].filter(([k]) => k.startsWith('etcd_recover_job') || k.startsWith('etcd_recover_backup')).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    });
    return last;
  };

  before(async function () {
    this.timeout(2_400_000); // on a cold cache this waits for setup's background build of the binaries
    // No schedule fires on its own during the test (a */30 backup at :00 or :30 would reset the failure
    // count and give the drill a newer backup than the one corrupted): every Job here is started by the test.
    ({ cp, store } = await declaredCluster(
      NS,
      { autoHeal: { enabled: false }, drill: { enabled: true, schedule: '0 0 1 1 *', members: 3 }, monitoring: { exporter: true, rpo: '1h' } },
      { backup: { schedule: '0 0 1 1 *', verifySchedule: '0 0 1 1 *' } },
    ));
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    contract = parseContract((await core.readNamespacedConfigMap({ namespace: NS, name: 'etcd-recovery-contract' })).data!['contract.json']!, 'test');
    const apps = cp.kubeConfig().makeApiClient(AppsV1Api);
    await waitFor('etcd 3/3 ready', async () => (await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).status?.readyReplicas === 3, 300_000, 500);
    await waitFor('the exporter ready', async () => (await apps.readNamespacedDeployment({ namespace: NS, name: 'etcd-exporter' })).status?.readyReplicas === 1, 300_000, 500);
    await writeKeys(await memberIPs(cp, NS, MEMBERS), 'app/', 200);
  });
  after(async () => {
    await cp?.stop();
    await stopSandbox(store);
  });

  let good: SnapshotRecord;

  it('before any backup: members up, quorum, no backup, RPO not met', async () => {
    const m = await scrape();
    for (const member of MEMBERS) assert.equal(metric(m, 'etcd_recover_member_up', { member }), 1, member);
    assert.equal(metric(m, 'etcd_recover_quorum'), 1);
    assert.equal(metric(m, 'etcd_recover_bucket_up'), 1);
    assert.equal(metric(m, 'etcd_recover_rpo_met'), 0);
    assert.equal(metric(m, 'etcd_recover_rpo_target_seconds'), 3600);
    assert.equal(metric(m, 'etcd_recover_backup_last_revision'), undefined);
  });

  it('a scheduled backup: metrics equal the record, a Normal BackupSucceeded Event, its status in the ConfigMap', async () => {
    const r = await runJob('etcd-backup');
    assert.equal(r.succeeded, true, r.cause);
    const { snapshots } = await new Catalog(bucket(), 'etcd').list();
    good = snapshots[0]!;
    const m = await scrapeUntil('the exporter sees the backup', (x) => metric(x, 'etcd_recover_backup_last_revision') === good.revision);
    assert.equal(metric(m, 'etcd_recover_backup_last_revision'), good.revision);
    assert.equal(metric(m, 'etcd_recover_backup_last_keys'), good.userKeys);
    assert.equal(metric(m, 'etcd_recover_backup_last_size_bytes'), good.dbSize);
    assert.equal(metric(m, 'etcd_recover_rpo_met'), 1);
    assert.equal(metric(m, 'etcd_recover_job_consecutive_failures', { job: 'backup' }), 0);
    const ev = await events('BackupSucceeded');
    assert.equal(ev.length, 1);
    assert.equal(ev[0]!.type, 'Normal');
    assert.match(ev[0]!.message ?? '', new RegExp(`backup ${good.name}: revision ${good.revision}`));
    const st = await status('backup');
    assert.equal(st.last.ok, true);
    assert.equal(st.consecutiveFailures, 0);
  });

  it('a backup job that keeps failing: the metric, the Warning Event, the status and the alert condition all say so', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await runJob('etcd-backup', ['agent', 'backup', '--quiet', '--member', 'http://etcd-9.nowhere:2379']);
      assert.equal(r.succeeded, false);
    }
    const ev = await events('BackupFailed');
    assert.ok(ev.length >= 2, `${ev.length} BackupFailed events`);
    assert.ok(ev.every((e) => e.type === 'Warning'));
    assert.match(ev[0]!.message ?? '', /cannot be snapshotted|not one of the endpoints/);
    const st = await status('backup');
    assert.equal(st.last.ok, false);
    // Every attempt counts (a Job retries its pod up to backoffLimit 2): two failed Jobs are 6 attempts.
    assert.ok(st.consecutiveFailures >= 2, `${st.consecutiveFailures} consecutive failures`);
    assert.ok(ev.length >= st.consecutiveFailures, 'one Warning Event per failed attempt');
    const m = await scrapeUntil('the exporter counts the failures', (x) => (metric(x, 'etcd_recover_job_consecutive_failures', { job: 'backup' }) ?? 0) >= 2);
    const failures = metric(m, 'etcd_recover_job_consecutive_failures', { job: 'backup' })!;
    assert.ok(failures >= 2, `consecutive failures ${failures}`);
    // EtcdRecoverBackupJobFailing fires at >= 2 (packages/pulumi/src/monitoring.ts).
    const rule = alertRules('etcd', { monitoring: { runbookBaseUrl: 'x' } } as never).find((a) => a.alert === 'EtcdRecoverBackupJobFailing')!;
    const threshold = Number(/>= (\d+)$/.exec(String(rule['expr']))![1]);
    assert.ok(failures >= threshold, 'the alert condition holds');
    // The last good backup is still what the RPO metric counts.
    assert.equal(metric(m, 'etcd_recover_backup_last_revision'), good.revision);
  });

  it('the drill CronJob\'s Job restores the newest verified backup in its own pod and passes; on a backup corrupted in the bucket it fails, loudly', async () => {
    const ok = await runJob('etcd-drill');
    assert.equal(ok.succeeded, true, ok.cause);
    assert.equal((await events('DrillSucceeded')).length, 1);
    assert.equal((await status('drill')).last.ok, true);
    // Corrupt the backup the drill will pick (the newest verified one) in the bucket.
    const key = layout.snapshotObject('etcd', good.name);
    const parts: Buffer[] = [];
    for await (const c of bucket().get(key)) parts.push(Buffer.from(c));
    const bytes = Buffer.concat(parts);
    bytes[8192 + 300]! ^= 0xff;
    await bucket().put(key, bytes, { contentType: 'application/octet-stream' });
    const bad = await runJob('etcd-drill');
    assert.equal(bad.succeeded, false);
    assert.match(bad.cause ?? '', /corrupt|sha256|verification/i);
    const ev = await events('DrillFailed');
    assert.equal(ev.length, 1);
    assert.equal(ev[0]!.type, 'Warning');
    const st = await status('drill');
    assert.equal(st.last.ok, false);
    assert.equal(st.consecutiveFailures, 1);
    await scrapeUntil('the exporter counts the failed drill', (x) => metric(x, 'etcd_recover_job_consecutive_failures', { job: 'drill' }) === 1);
  });
});
