import { strict as assert } from 'node:assert';
import { AppsV1Api, CoreV1Api, KubernetesObjectApi, PatchStrategy, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import { Catalog, Journal, layout, listAll, readJson, type Sandbox } from '@etcd-recover/core';
import { waitFor, sleep, type ControlPlane } from '../support/kube/index.js';
import { declaredCluster, memberIPs as memberIPsOf, writeKeys } from '../support/declared-cluster.js';
import { stopSandbox, storeFor } from '../support/sandbox.js';
import { json, runCli, type CliResult } from '../support/cli.js';

const NS = 'hcp-ms';
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];
const KEYS = 200;

/**
 * The member start-up decision on a real control plane: the EtcdCluster component's StatefulSet,
 * whose init container (`agent member-init`) reads the cluster's catalog in a real MinIO bucket
 * through the recovery contract and the backup credentials. Members that come back on empty volumes
 * while a verified backup exists stay in Init with one line naming it and `quorum`; nothing
 * bootstraps an empty cluster, and `quorum` brings the data back.
 */
describe('member start on Kubernetes (real control plane)', function () {
  this.timeout(900_000);
  let cp: ControlPlane;
  let store: Sandbox;
  let kube: string[];
  let backup: { name: string; revision: number; createdAt: string };
  let core: CoreV1Api;
  let apps: AppsV1Api;

  const cli = (args: string[]): Promise<CliResult> => runCli([...args, ...kube], { timeoutMs: 900_000 });
  const initLog = (pod: string): string => {
    let log = '';
    for (const previous of [true, false]) {
      try {
        log += cp.logsOf(NS, pod, 'member-init', { previous });
      } catch {
        /* no such run */
      }
    }
    return log;
  };
  const refusalLine = () => `verified backup(s) of this cluster exist: refusing to bootstrap an empty cluster; newest backup ${backup.name} (revision ${backup.revision}, ${backup.createdAt}), restore it with: kubectl etcd-recover quorum`;
  const scale = (replicas: number) =>
    KubernetesObjectApi.makeApiClient(cp.kubeConfig()).patch({ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'etcd', namespace: NS }, spec: { replicas } } as KubernetesObject, undefined, undefined, 'member-start-test', undefined, PatchStrategy.MergePatch);

  before(async function () {
    this.timeout(2_400_000); // on a cold cache this waits for setup's background build of the binaries
    // A short peer wait keeps the test quick; the default is 30 s.
    ({ cp, store } = await declaredCluster(NS, { autoHeal: { enabled: false }, peerWaitSeconds: 3 }));
    kube = ['--kubeconfig', cp.kubeconfigPath, '-n', NS];
    core = cp.kubeConfig().makeApiClient(CoreV1Api);
    apps = cp.kubeConfig().makeApiClient(AppsV1Api);
    await waitReady(apps);
    // A first start on an empty bucket bootstraps (after the bounded peer wait): the members start in
    // parallel, so whichever looks first bootstraps and the others may find it already started.
    const logs = ['etcd-0', 'etcd-1', 'etcd-2'].map(initLog);
    assert.ok(logs.some((l) => /the bucket holds no backup of this cluster: bootstrapping/.test(l)), logs.join('\n---\n'));
    for (const l of logs) assert.match(l, /the bucket holds no backup of this cluster: bootstrapping|starting after its peers bootstrapped/);
    await writeKeys(await memberIPs(cp), 'app/', KEYS);
    const r = await cli(['backup', 'create', '-o', 'json', '-q']);
    assert.equal(r.code, 0, r.stderr);
    backup = json(r);
  });
  after(async () => {
    await cp?.stop();
    await stopSandbox(store);
  });

  it('two PVCs lost while the survivor\'s pod is held back from starting — no empty quorum forms', async () => {
    // Hold the survivor etcd-2 back: the StatefulSet scaled to 2 terminates its pod; its volume stays.
    await scale(2);
    await waitFor('etcd-2 held back', async () => !(await pod(core, 'etcd-2')), 120_000, 500);
    await losePVCs(core, ['etcd-0', 'etcd-1']);
    for (const m of ['etcd-0', 'etcd-1']) {
      await waitFor(`${m} refuses to bootstrap`, async () => initLog(m).includes(refusalLine()), 180_000, 500);
    }
    for (const m of ['etcd-0', 'etcd-1']) await assertHeldInInit(cp, core, m);

    // The survivor starts on its data (not behind the newest backup); the empty members still do not bootstrap.
    await scale(3);
    await waitFor('etcd-2 starts on its data', async () => /initial-cluster-state new \(data at revision \d+, not behind the newest verified backup/.test(initLog('etcd-2')), 180_000, 500);
    // Alone it has no quorum: etcd runs on the survivor's data but is not ready (it serves clients only once in a quorum).
    const survivor = await waitFor('etcd-2 runs etcd', async () => {
      const p = await pod(core, 'etcd-2');
      return p?.status?.containerStatuses?.[0]?.state?.running ? p : undefined;
    }, 120_000, 500);
    assert.notEqual(survivor.status?.containerStatuses?.[0]?.ready, true, 'the survivor alone is not ready: no quorum formed');
    assert.match(initLog('etcd-2'), new RegExp(`1 verified backup\\(s\\) in the bucket, newest ${backup.name}`));
    for (const m of ['etcd-0', 'etcd-1']) await assertHeldInInit(cp, core, m);
  });

  it('All PVCs lost with backups in the bucket — the pods stay in Init, nothing bootstraps, `quorum` recovers', async () => {
    await scale(3);
    await losePVCs(core, MEMBERS);
    for (const m of MEMBERS) await waitFor(`${m} refuses to bootstrap`, async () => initLog(m).includes(refusalLine()), 180_000, 500);
    await sleep(3_000);
    for (const m of MEMBERS) await assertHeldInInit(cp, core, m);

    const run = await cli(['quorum', '--yes', '-o', 'json', '--timeout', '300']);
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.equal(report.restorePoint.kind, 'backup');
    assert.equal(report.restorePoint.name, backup.name);
    await waitReady(apps);
    for (const ip of await memberIPs(cp)) {
      assert.equal(await countOn(ip, 'app/'), KEYS, `${ip}: every key of the backup`);
      assert.ok((await memberStatus(ip))!.revision > backup.revision, 'revision bumped past the backup');
    }
  });

  it('the same with autoRestore on: all PVCs lost with backups in the bucket — the cluster comes back from the newest backup, every key of it present', async () => {
    // Newer data and a newer backup: the newest trusted backup is the one that must come back.
    await writeKeys(await memberIPs(cp), 'auto/', 100);
    const r = await cli(['backup', 'create', '-o', 'json', '-q']);
    assert.equal(r.code, 0, r.stderr);
    const newest = json(r);
    // autoRestore on: the StatefulSet's init container as the component renders it with `autoRestore: true`
    // (test/pulumi/auto-restore.test.ts: exactly `--auto-restore` added). Scaled to 0 first so every pod comes back on it.
    await scale(0);
    await waitFor('etcd scaled to 0', async () => !(await Promise.all(MEMBERS.map((m) => pod(core, m)))).some(Boolean), 120_000, 500);
    await waitFor('status shows 0 ready', async () => !(await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).status?.readyReplicas, 60_000, 500);
    const sts = await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' });
    sts.spec!.template.spec!.initContainers![0]!.args!.push('--auto-restore');
    await apps.replaceNamespacedStatefulSet({ namespace: NS, name: 'etcd', body: sts });
    await losePVCs(core, MEMBERS);
    await scale(3);

    await waitReady(apps);
    for (const ip of await memberIPs(cp)) {
      assert.equal(await countOn(ip, 'app/'), KEYS, `${ip}: every key of the backup`);
      assert.equal(await countOn(ip, 'auto/'), 100, `${ip}: including those only the newest backup holds`);
      assert.ok((await memberStatus(ip))!.revision > newest.revision, 'revision bumped past the backup');
    }
    const logs = MEMBERS.map(initLog);
    assert.equal(logs.filter((l) => /decided automatic-restore round/.test(l)).length, 1, 'one member decided, the others followed');
    for (const l of logs) assert.ok(l.includes(`restored from ${newest.name} by automatic-restore round`), l);
    const catalog = new Catalog(storeFor(store), 'etcd');
    const rounds = await listAll(catalog.store, layout.autoRestoreRoundsPrefix('etcd'));
    assert.equal(rounds.length, 1, 'exactly one decision object');
    const decision = (await readJson<any>(catalog.store, rounds[0]!.key))!.value;
    assert.equal(decision.snapshot.name, newest.name);
    assert.equal((await Journal.load(catalog.store, 'etcd', decision.recoveryId))!.doc.status, 'completed');
  });
});

// ------------------------------------------------------------------ helpers

async function pod(core: CoreV1Api, name: string): Promise<V1Pod | undefined> {
  return core.readNamespacedPod({ namespace: NS, name }).catch(() => undefined);
}

/** The STATUS column `kubectl get pods` shows for a pod whose init container has not succeeded. */
function kubectlStatus(p: V1Pod): string {
  const init = p.status?.initContainerStatuses?.[0];
  if (init?.state?.waiting?.reason && init.state.waiting.reason !== 'PodInitializing') return `Init:${init.state.waiting.reason}`;
  if (init?.state?.terminated && init.state.terminated.exitCode !== 0) return 'Init:Error';
  if (init?.state?.running || init?.state?.waiting) return 'Init:0/1';
  return p.status?.phase ?? 'Unknown';
}

/** The pod stays in Init: member-init exited 9, etcd never ran, nothing listens on its client port. */
async function assertHeldInInit(cp: ControlPlane, core: CoreV1Api, name: string): Promise<void> {
  // The log line the caller waited for is written before member-init exits, and the kubelet reports
  // the exit on its next status sync: wait (bounded) until a finished run of member-init is reported.
  const exitOf = (q?: V1Pod) => {
    const s = q?.status?.initContainerStatuses?.[0];
    return s?.state?.terminated?.exitCode ?? s?.lastState?.terminated?.exitCode;
  };
  const p = (await waitFor(`${name}: member-init's exit reported`, async () => {
    const q = await pod(core, name);
    return q && exitOf(q) !== undefined ? q : undefined;
  }, 60_000, 500))!;
  assert.ok(p, `${name} exists`);
  assert.match(kubectlStatus(p), /^Init:/, `${name}: ${kubectlStatus(p)}`);
  assert.equal(p.status?.phase, 'Pending');
  assert.equal(exitOf(p), 9, `${name}: member-init exit code`);
  const etcd = p.status?.containerStatuses?.[0];
  assert.ok(!etcd?.state?.running && !etcd?.state?.terminated && !etcd?.lastState?.terminated, `${name}: etcd never started`);
  const ip = await cp.podIP(NS, name).catch(() => undefined);
  if (ip) assert.equal(await memberStatus(ip), undefined, `${name}: nothing answers on ${ip}:2379`);
}

/**
 * Lost volumes: the PVCs are deleted (the protection finalizer holds each until its pod is gone)
 * and their pods with them; the StatefulSet brings the pods back on new, empty volumes.
 */
async function losePVCs(core: CoreV1Api, members: string[]): Promise<void> {
  for (const m of members) await core.deleteNamespacedPersistentVolumeClaim({ namespace: NS, name: `data-${m}` });
  for (const m of members) await core.deleteNamespacedPod({ namespace: NS, name: m, gracePeriodSeconds: 0 }).catch(() => undefined);
}

async function waitReady(apps: AppsV1Api): Promise<void> {
  await waitFor('etcd 3/3 ready', async () => (await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).status?.readyReplicas === 3, 300_000, 500);
}

/** The members' pod IPs. */
const memberIPs = (cp: ControlPlane) => memberIPsOf(cp, NS, MEMBERS);

/** One member's own view (status), or undefined when nothing answers. */
async function memberStatus(ip: string): Promise<{ revision: number; leader: string } | undefined> {
  const c = new Etcd3({ hosts: `http://${ip}:2379`, dialTimeout: 2_000 });
  try {
    const s = await Promise.race([c.maintenance.status(), sleep(3_000).then(() => undefined)]);
    return s ? { revision: Number(s.header.revision), leader: String(s.leader) } : undefined;
  } catch {
    return undefined;
  } finally {
    c.close();
  }
}

async function countOn(ip: string, prefix: string): Promise<number> {
  const c = new Etcd3({ hosts: `http://${ip}:2379` });
  try {
    return await c.getAll().prefix(prefix).serializable(true).count();
  } finally {
    c.close();
  }
}
