import { strict as assert } from 'node:assert';
import { AppsV1Api, BatchV1Api, CoreV1Api } from '@kubernetes/client-node';
import { S3ObjectStore, listAll, type Sandbox } from '@etcd-recover/core';
import type { UpResult } from '@pulumi/pulumi/automation/index.js';
import { hostedControlPlane } from '../../examples/hosted-control-plane/program.js';
import { json, runCli, type CliResult } from '../support/cli.js';
import { loseMembers, memberIPs } from '../support/declared-cluster.js';
import { EXAMPLE_PROJECT as PROJECT, engineStack, exampleConfig, type EngineStack } from '../support/engine.js';
import { createHcpSecrets, tlsClient, writeKeysTls, type HcpPki } from '../support/hcp-secrets.js';
import { startControlPlane, waitFor, type ControlPlane } from '../support/kube/index.js';
import { startSandbox, stopSandbox } from '../support/sandbox.js';

const NS = 'hcp-engine';
const BUCKET = 'hcp-engine-backups';
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];

/** Resource operations of an update, without the ones that changed nothing. */
function changes(r: { summary: { resourceChanges?: Record<string, number> } }): Record<string, number> {
  return Object.fromEntries(Object.entries(r.summary.resourceChanges ?? {}).filter(([op, n]) => op !== 'same' && n > 0));
}

/**
 * The hosted-control-plane example (examples/hosted-control-plane/program.ts, the program users run
 * with `pulumi up`) through the REAL Pulumi engine — the CLI and the Kubernetes provider built from
 * the Go module proxy, driven by the Automation API with the program inline — against the real
 * control plane, with TLS on etcd's peer and client traffic from Secrets this test issues. Then the
 * plugin recovers what `up` made, and the engine sees no drift.
 */
describe('pulumi up for real: the hosted-control-plane example through the real engine, TLS everywhere (real control plane)', function () {
  this.timeout(1_200_000);
  let cp: ControlPlane;
  let store: Sandbox;
  let pki: HcpPki;
  let eng: EngineStack;
  let firstUp: UpResult;
  let statefulSetUid: string;

  const cli = (args: string[]): Promise<CliResult> => runCli([...args, '--kubeconfig', cp.kubeconfigPath, '-n', NS], { timeoutMs: 900_000 });
  const apps = () => cp.kubeConfig().makeApiClient(AppsV1Api);
  const etcdClient = async () => tlsClient(pki, await memberIPs(cp, NS, MEMBERS), `etcd-client.${NS}.svc`);
  const progress = (out: string) => {
    if (process.env['ETCD_RECOVER_ENGINE_DEBUG'] === '1') process.stderr.write(out);
  };

  before(async function () {
    this.timeout(2_400_000); // a cold cache builds the engine here (or waits for setup's background build)
    cp = await startControlPlane();
    store = await startSandbox({ members: 1, cluster: 'store-only', storeHost: cp.network.hostIP });
    pki = await createHcpSecrets(cp, NS);
    const s3 = store.s3Config();
    eng = await engineStack({
      name: 'hcp',
      project: PROJECT,
      program: async () => ({ ...hostedControlPlane() }),
      config: exampleConfig({ kubeconfigPath: cp.kubeconfigPath, s3, namespace: NS, bucket: BUCKET, extra: { readyTimeout: '6m' } }),
    });
  });
  after(async () => {
    eng?.cleanup();
    await cp?.stop();
    await stopSandbox(store);
  });

  it('`up` creates the bucket (dynamic provider), waits for a healthy TLS etcd, and the hosted API server runs on it', async () => {
    firstUp = await eng.stack.up({ onOutput: progress });
    assert.equal(firstUp.summary.result, 'succeeded');
    assert.equal(firstUp.outputs['etcdClientEndpoint']!.value, `https://etcd-client.${NS}.svc:2379`);
    assert.equal(firstUp.outputs['backupBucket']!.value, BUCKET);
    // The engine waited for the provider's readiness: all three members ready when `up` returned.
    const sts = await apps().readNamespacedStatefulSet({ namespace: NS, name: 'etcd' });
    assert.equal(sts.status?.readyReplicas, 3);
    statefulSetUid = sts.metadata!.uid!;
    // The bucket exists in MinIO, made by the engine's own dynamic-provider host.
    await new S3ObjectStore({ ...store.s3Config(), bucket: BUCKET }).probe();
    // etcd serves TLS only, and requires a client certificate.
    const c = await etcdClient();
    try {
      await c.put('engine/probe').value('1');
      const members = await c.cluster.memberList({});
      assert.equal(members.members.length, 3);
      for (const m of members.members) {
        assert.ok(m.clientURLs.every((u) => u.startsWith('https://')), m.clientURLs.join());
        assert.ok(m.peerURLs.every((u) => u.startsWith('https://')), m.peerURLs.join());
      }
    } finally {
      c.close();
    }
    const dep = await apps().readNamespacedDeployment({ namespace: NS, name: 'kube-apiserver' });
    assert.equal(dep.status?.readyReplicas, 1, 'the hosted API server reached etcd over TLS');
  });

  it('a Job from the declared backup CronJob writes a verified backup over TLS', async () => {
    const r = await cli(['backup', 'create', '-o', 'json', '-q']);
    assert.equal(r.code, 0, r.stderr);
    const record = json(r);
    assert.equal(record.verification?.ok, true, JSON.stringify(record.verification));
    assert.ok(record.revision > 1);
    assert.match(record.sourceMember.endpoint, /^https:\/\/etcd-\d\.etcd-discovery\.hcp-engine\.svc:2379$/, 'taken over TLS');
    const list = json(await cli(['backup', 'list', '-o', 'json']));
    assert.ok(list.snapshots.some((b: { name: string }) => b.name === record.name), 'the backup is in the bucket the engine created');
  });

  it('a second `up`, `preview` and `refresh` find nothing to change (no perpetual diffs, no drift)', async () => {
    const up = await eng.stack.up({ onOutput: progress });
    assert.deepEqual(changes(up), {}, 'second up');
    const preview = await eng.stack.preview();
    assert.deepEqual(Object.fromEntries(Object.entries(preview.changeSummary).filter(([op, n]) => op !== 'same' && n > 0)), {}, 'preview');
    const refresh = await eng.stack.refresh({ onOutput: progress });
    assert.deepEqual(changes(refresh), {}, 'refresh');
  });

  it('a new schedule, retention and etcd resources apply in place: the StatefulSet is updated, not replaced, and keeps its data', async () => {
    const c = await etcdClient();
    try {
      await writeKeysTls(c, 'before-change/', 100);
    } finally {
      c.close();
    }
    await eng.stack.setAllConfig({
      [`${PROJECT}:backupSchedule`]: { value: '*/15 * * * *' },
      [`${PROJECT}:keepLast`]: { value: '5' },
      [`${PROJECT}:etcdResources`]: { value: JSON.stringify({ requests: { cpu: '150m', memory: '256Mi' } }) },
    });
    const up = await eng.stack.up({ onOutput: progress });
    const ops = changes(up);
    assert.equal(ops['replace'], undefined, JSON.stringify(ops));
    assert.equal(ops['delete'], undefined, JSON.stringify(ops));
    assert.ok((ops['update'] ?? 0) >= 2, JSON.stringify(ops));
    // The provider (4.25) returns from an update once the controller took it, not when the rollout is
    // done: the members roll one at a time after `up`, and keep their data.
    const sts = await waitFor('the rolling update done', async () => {
      const s = await apps().readNamespacedStatefulSet({ namespace: NS, name: 'etcd' });
      const st = s.status;
      return st?.observedGeneration === s.metadata?.generation && st?.updatedReplicas === 3 && st?.readyReplicas === 3 && st?.currentRevision === st?.updateRevision ? s : undefined;
    }, 600_000, 1_000);
    assert.equal(sts.metadata!.uid, statefulSetUid, 'the same StatefulSet');
    assert.equal(sts.spec!.template.spec!.containers[0]!.resources!.requests!['cpu'], '150m');
    const cron = await cp.kubeConfig().makeApiClient(BatchV1Api).readNamespacedCronJob({ namespace: NS, name: 'etcd-backup' });
    assert.equal(cron.spec!.schedule, '*/15 * * * *');
    assert.ok(cron.spec!.jobTemplate.spec!.template.spec!.containers[0]!.args!.join(' ').includes('--keep-last 5'));
    const after = await etcdClient();
    try {
      assert.equal(await after.getAll().prefix('before-change/').count(), 100, 'every key survived the rolling update');
    } finally {
      after.close();
    }
  });

  it('`kubectl etcd-recover quorum` (two PVCs lost) recovers what `up` made over TLS; the next `up` changes nothing and undoes nothing', async () => {
    const c = await etcdClient();
    try {
      await writeKeysTls(c, 'app/', 200);
    } finally {
      c.close();
    }
    await loseMembers(cp, NS, ['etcd-1', 'etcd-2']);
    const run = await cli(['quorum', '--yes', '-o', 'json', '--timeout', '600']);
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.equal(report.restorePoint.kind, 'live', 'restored from the survivor, over TLS');
    await waitFor('3/3 ready after the restore', async () => (await apps().readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).status?.readyReplicas === 3, 300_000, 1_000);
    const restored = await etcdClient();
    try {
      assert.equal(await restored.getAll().prefix('app/').count(), 200);
      assert.equal(await restored.getAll().prefix('before-change/').count(), 100);
    } finally {
      restored.close();
    }

    const preview = await eng.stack.preview();
    assert.deepEqual(Object.fromEntries(Object.entries(preview.changeSummary).filter(([op, n]) => op !== 'same' && n > 0)), {}, 'preview after the recovery');
    const up = await eng.stack.up({ onOutput: progress });
    assert.deepEqual(changes(up), {}, 'up after the recovery');
    // Nothing the recovery left was undone: members, the hosted API server and the CronJobs are as declared.
    const sts = await apps().readNamespacedStatefulSet({ namespace: NS, name: 'etcd' });
    assert.equal(sts.spec?.replicas, 3);
    assert.equal(sts.metadata!.uid, statefulSetUid);
    assert.equal((await apps().readNamespacedDeployment({ namespace: NS, name: 'kube-apiserver' })).spec?.replicas, 1);
    for (const cj of (await cp.kubeConfig().makeApiClient(BatchV1Api).listNamespacedCronJob({ namespace: NS })).items) {
      assert.notEqual(cj.spec?.suspend, true, `${cj.metadata?.name} resumed`);
    }
    const still = await etcdClient();
    try {
      assert.equal(await still.getAll().prefix('app/').count(), 200, 'the next up did not undo the restore');
    } finally {
      still.close();
    }
  });

  it('`destroy` removes everything it made except the bucket and its backups, and nothing hangs', async () => {
    const started = Date.now();
    const d = await eng.stack.destroy({ onOutput: progress });
    assert.equal(d.summary.result, 'succeeded');
    assert.ok(Date.now() - started < 600_000);
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    await waitFor('the StatefulSet and its pods gone', async () => (await core.listNamespacedPod({ namespace: NS, labelSelector: 'app.kubernetes.io/name=etcd' })).items.length === 0, 180_000, 1_000);
    assert.equal((await apps().listNamespacedStatefulSet({ namespace: NS })).items.length, 0);
    // Deployments declared with skipAwait (the exporter, the archiver) are deleted without waiting: they go within seconds.
    let left: string[] = [];
    await waitFor('every Deployment gone', async () => (left = (await apps().listNamespacedDeployment({ namespace: NS })).items.map((d) => d.metadata!.name!)).length === 0, 120_000, 1_000).catch(() => {
      throw new Error(`Deployments left after destroy: ${left.join(', ')}`);
    });
    assert.equal((await cp.kubeConfig().makeApiClient(BatchV1Api).listNamespacedCronJob({ namespace: NS })).items.length, 0);
    assert.equal((await core.listNamespacedConfigMap({ namespace: NS })).items.filter((c) => c.metadata?.name?.startsWith('etcd')).length, 0);
    // The members' volumes stay too (the StatefulSet's PVCs are retained): destroy deletes no data.
    const pvcs = (await core.listNamespacedPersistentVolumeClaim({ namespace: NS })).items.map((p) => p.metadata!.name).sort();
    assert.deepEqual(pvcs, MEMBERS.map((m) => `data-${m}`));
    const bucket = new S3ObjectStore({ ...store.s3Config(), bucket: BUCKET });
    await bucket.probe(); // the bucket stays,
    assert.ok((await listAll(bucket, 'clusters/etcd/')).length > 0, 'with the backups in it');
  });
});
