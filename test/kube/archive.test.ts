import { strict as assert } from 'node:assert';
import { AppsV1Api } from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import { layout, listChains, readJson, type ArchiveStatus, type Sandbox } from '@etcd-recover/core';
import { waitFor, type ControlPlane } from '../support/kube/index.js';
import { declaredCluster, loseMembers, memberIPs } from '../support/declared-cluster.js';
import { stopSandbox, storeFor } from '../support/sandbox.js';
import { json, runCli } from '../support/cli.js';

const NS = 'hcp-arch';
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];

/**
 * Continuous archiving on a real control plane: the component's archiver Deployment follows the
 * etcd StatefulSet into a real MinIO bucket; every PVC is lost while writes run; `quorum` (no
 * flags) restores the newest archived revision — through a Job that rebuilds it in the cluster —
 * and the data it reports lost is seconds of writes, not the 30-minute backup schedule.
 */
describe('continuous archiving on Kubernetes (real control plane)', function () {
  this.timeout(900_000);
  let cp: ControlPlane;
  let store: Sandbox;
  let kube: string[];

  before(async function () {
    this.timeout(2_400_000);
    ({ cp, store } = await declaredCluster(NS, { autoHeal: { enabled: false }, peerWaitSeconds: 3, archive: { interval: '200ms' } }));
    kube = ['--kubeconfig', cp.kubeconfigPath, '-n', NS];
    const apps = cp.kubeConfig().makeApiClient(AppsV1Api);
    await waitFor('etcd 3/3 ready', async () => (await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).status?.readyReplicas === 3, 300_000, 500);
  });
  after(async () => {
    await cp?.stop();
    await stopSandbox(store);
  });

  const archived = async () => (await readJson<ArchiveStatus>(storeFor(store), layout.archiveStatus('etcd')))?.value;

  it('all PVCs lost while writes run: `quorum` restores the newest archived revision; the loss it reports is seconds', async () => {
    const cli = (args: string[]) => runCli([...args, ...kube], { timeoutMs: 900_000 });
    await waitFor('the archiver started its chain', async () => (await archived())?.chain, 180_000, 500);
    const ips = await memberIPs(cp, NS, MEMBERS);
    const c = new Etcd3({ hosts: ips.map((ip) => `http://${ip}:2379`) });
    // Writes run (about 20 a second) until the members are gone; each acknowledged one is recorded.
    const acked: { key: string; revision: number; at: number }[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const key = `app/${String(i).padStart(5, '0')}`;
        try {
          const r = await c.put(key).value(`v${i}`).exec();
          acked.push({ key, revision: Number(r.header.revision), at: Date.now() });
        } catch {
          if (!writing) return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await waitFor('writes archived', async () => acked.length > 200 && ((await archived())?.lastRevision ?? 0) >= acked[150]!.revision, 120_000, 500);
      const status = await cli(['status', '-o', 'json']);
      assert.ok(json(status).archive, status.stdout + status.stderr);
      assert.ok(json(status).archive.lagSeconds < 5, `archive lag ${json(status).archive.lagSeconds}s`);
      assert.ok(!json(status).health.findings.some((f: { code: string }) => f.code === 'RPO_BREACHED'), 'the archive meets the RPO');
      await loseMembers(cp, NS, MEMBERS);
    } finally {
      writing = false;
      await writer;
      c.close();
    }
    const newest = (await archived())!.lastRevision;
    const dry = await cli(['quorum', '--dry-run', '-o', 'json']);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = json(dry);
    assert.equal(plan.restorePoint.kind, 'point-in-time', plan.restorePoint.reason);
    assert.ok(plan.restorePoint.revision >= newest, `restores ${plan.restorePoint.revision}, the archive held ${newest}`);
    // The loss the plan names is measured from the restore point to now (an upper bound: the loss
    // itself came later). It starts within seconds of the last acknowledged write — not 30 minutes
    // back, where the newest scheduled backup would be — however long the loss took to settle.
    const sinceLastAck = (Date.now() - acked[acked.length - 1]!.at) / 1000;
    assert.ok(plan.loss.seconds <= sinceLastAck + 10, `loss ${plan.loss.seconds}s; the last acknowledged write was ${Math.round(sinceLastAck)}s ago (the backup schedule is 30 min)`);
    assert.ok(Date.parse(plan.restorePoint.createdAt) >= acked[acked.length - 1]!.at - 5_000, `the point (${plan.restorePoint.createdAt}) is within 5 s of the last acknowledged write (${new Date(acked[acked.length - 1]!.at).toISOString()})`);
    const run = await cli(['quorum', '--yes', '-o', 'json', '--timeout', '300']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /job hcp-arch\/etcd-.*-point-in-time started/);
    // Every write the archive held is back; the ones after it are what the loss names.
    const after = new Etcd3({ hosts: (await memberIPs(cp, NS, MEMBERS)).map((ip) => `http://${ip}:2379`) });
    try {
      const got = await after.getAll().prefix('app/').keys();
      const restorable = acked.filter((a) => a.revision <= plan.restorePoint.revision);
      assert.ok(restorable.length > 150);
      for (const a of restorable) assert.ok(got.includes(a.key), `${a.key} (revision ${a.revision}) restored`);
      assert.ok(acked.length - restorable.length < 40, `${acked.length - restorable.length} acknowledged writes not archived before the loss`);
    } finally {
      after.close();
    }
    // The archiver follows the restored cluster in a new chain.
    await waitFor('a new chain on the restored cluster', async () => (await listChains(storeFor(store), 'etcd')).some((ch) => ch.record.reason === 'restored'), 180_000, 1_000);
  });
});
