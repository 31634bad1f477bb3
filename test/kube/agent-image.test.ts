import { strict as assert } from 'node:assert';
import { AppsV1Api, BatchV1Api, CoreV1Api, type V1Job } from '@kubernetes/client-node';
import { Catalog, S3ObjectStore, isVerified, type Sandbox } from '@etcd-recover/core';
import { waitFor, type ControlPlane } from '../support/kube/index.js';
import { declaredCluster, memberIPs, writeKeys } from '../support/declared-cluster.js';
import { agentImage, type AgentImage } from '../support/agent-image.js';
import { stopSandbox } from '../support/sandbox.js';
import { binaries } from '../support/binaries.js';

const NS = 'hcp-image';
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'] as const;

/**
 * The component's agent containers from the real agent image (docker/agent.Dockerfile, built by
 * scripts/build-image.sh): the harness runs them chrooted into the image's unpacked root filesystem,
 * as the pod's securityContext says (uid 65532, read-only root), with no host binaries in reach.
 * member-init brings up the StatefulSet's members, and the backup CronJob's Job writes a verified
 * snapshot. (The etcd containers themselves run the etcd image, mapped to host binaries as elsewhere.)
 */
describe('the agent image where the component runs it (real control plane, pods from the image\'s rootfs)', function () {
  this.timeout(600_000);
  let cp: ControlPlane;
  let store: Sandbox;
  let img: AgentImage;

  before(async function () {
    this.timeout(2_400_000); // a cold cache builds the image (or waits for setup's background build)
    img = agentImage();
    ({ cp, store } = await declaredCluster(
      NS,
      { autoHeal: { enabled: false } },
      // The component names ghcr.io/etcd-recover/agent:0.1.0: the image build tags it so.
      { backup: { schedule: '0 0 1 1 *', verifySchedule: '0 0 1 1 *' }, images: { '*etcd-recover*': img } },
    ));
  });
  after(async () => {
    await cp?.stop();
    await stopSandbox(store);
  });

  it('member-init runs from the image (its imageID) and the members come up 3/3', async () => {
    const apps = cp.kubeConfig().makeApiClient(AppsV1Api);
    await waitFor('etcd 3/3 ready', async () => (await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).status?.readyReplicas === 3, 300_000, 500)
      .catch(async (e: Error) => { throw new Error(`${e.message}\n${await cp.describePods(NS, 'app.kubernetes.io/name=etcd')}`); });
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    for (const m of MEMBERS) {
      const pod = await core.readNamespacedPod({ namespace: NS, name: m });
      const init = pod.status?.initContainerStatuses?.find((s) => s.name === 'member-init');
      assert.equal(init?.imageID, img.id, `${m}'s member-init ran from the built image`);
      assert.equal(init?.state?.terminated?.exitCode, 0);
      // The pod's spec, as the component declares it: non-root, read-only root filesystem.
      const spec = pod.spec!.initContainers!.find((c) => c.name === 'member-init')!;
      assert.equal(spec.image, 'ghcr.io/etcd-recover/agent:0.1.0');
    }
    assert.match(cp.logsOf(NS, 'etcd-0', 'member-init'), /initial-cluster-state new/);
    await writeKeys(await memberIPs(cp, NS, MEMBERS), 'app/', 300);
  });

  it('the backup CronJob\'s Job, from the image as uid 65532 on a read-only root, writes a verified snapshot', async () => {
    const kc = cp.kubeConfig();
    const batch = kc.makeApiClient(BatchV1Api);
    const cron = await batch.readNamespacedCronJob({ namespace: NS, name: 'etcd-backup' });
    const podSpec = cron.spec!.jobTemplate.spec!.template.spec!;
    assert.equal(podSpec.securityContext?.runAsUser, 65532);
    assert.equal(podSpec.containers[0]!.securityContext?.readOnlyRootFilesystem, true);
    const job: V1Job = {
      metadata: { name: 'etcd-backup-image', namespace: NS, annotations: { 'cronjob.kubernetes.io/instantiate': 'manual' } },
      spec: cron.spec!.jobTemplate.spec!,
    };
    await batch.createNamespacedJob({ namespace: NS, body: job });
    const { succeeded, diagnostics } = await cp.waitForJob(NS, 'etcd-backup-image');
    assert.ok(succeeded, `backup job failed:\n${diagnostics}`);
    const core = kc.makeApiClient(CoreV1Api);
    const pods = await core.listNamespacedPod({ namespace: NS, labelSelector: 'job-name=etcd-backup-image' });
    const done = pods.items.find((p) => p.status?.phase === 'Succeeded');
    assert.equal(done?.status?.containerStatuses?.[0]?.imageID, img.id, 'the Job ran from the built image');
    const catalog = new Catalog(new S3ObjectStore(store.s3Config()), 'etcd');
    const { snapshots } = await catalog.list();
    assert.equal(snapshots.length, 1, diagnostics);
    assert.ok(isVerified(snapshots[0]!));
    assert.ok(snapshots[0]!.totalKeys >= 300, `totalKeys ${snapshots[0]!.totalKeys}`);
  });

  it('a container from the image sees the image, not the host: no host binaries, its root read-only', async () => {
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: 'image-probe' },
        spec: {
          restartPolicy: 'Never',
          securityContext: { runAsUser: 65532, runAsGroup: 65532, runAsNonRoot: true },
          containers: [{
            name: 'probe',
            image: 'ghcr.io/etcd-recover/agent:0.1.0',
            command: ['/bin/sh', '-c', `id -u; test ! -e ${binaries().etcdBinDir} && echo no-host-bins; touch /x 2>/dev/null || echo read-only; ls /opt/etcd-recover`],
            securityContext: { readOnlyRootFilesystem: true },
          }],
        },
      },
    });
    await waitFor('the probe pod finished', async () => ['Succeeded', 'Failed'].includes((await core.readNamespacedPod({ namespace: NS, name: 'image-probe' })).status?.phase ?? ''), 60_000, 300);
    const log = cp.logsOf(NS, 'image-probe', 'probe');
    assert.deepEqual(log.trim().split('\n'), ['65532', 'no-host-bins', 'read-only', 'kubectl-etcd_recover.cjs', 'native', 'node_modules']);
  });
});
