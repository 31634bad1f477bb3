import { strict as assert } from 'node:assert';
import { generateKeyPairSync } from 'node:crypto';
import { request } from 'node:https';
import { AppsV1Api, CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import { Journal, S3ObjectStore, layout, type Sandbox } from '@etcd-recover/core';
import { applyManifests, waitFor, KUBE_VERSION, type ControlPlane } from '../support/kube/index.js';
import { declaredCluster } from '../support/declared-cluster.js';
import { stopSandbox } from '../support/sandbox.js';
import { json, runCli, type CliResult } from '../support/cli.js';

const NS = 'hcp-q';
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];
const PVC = (m: string) => `data-${m}`;
const HOSTED_TOKEN = 'hosted-admin-token';

/**
 * `kubectl etcd-recover quorum` against the EtcdCluster component's resources on a real control
 * plane: a 3-member etcd StatefulSet, a hosted kube-apiserver Deployment that stores its objects in
 * it (declared as the dependent to scale down), a pause object, MinIO as the bucket. Every etcd-side
 * step runs as a Job in the cluster; the plugin talks only to the API server.
 */
describe('quorum on Kubernetes (real control plane)', function () {
  this.timeout(900_000);
  let cp: ControlPlane;
  let store: Sandbox;
  let kube: string[];

  const cli = (args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult> => runCli([...args, ...kube], { timeoutMs: 900_000, ...(env ? { env } : {}) });

  before(async () => {
    ({ cp, store } = await declaredCluster(NS, {
      autoHeal: { enabled: false },
      dependents: [{ kind: 'Deployment', name: 'kube-apiserver', replicas: 1 }],
      pause: { apiVersion: 'v1', kind: 'ConfigMap', resource: 'configmaps', name: 'hosted-cluster', pausePatch: { data: { paused: 'true' } }, resumePatch: { data: { paused: null } } },
    }));
    await applyManifests(cp.kubeConfig(), hostedControlPlane());
    kube = ['--kubeconfig', cp.kubeconfigPath, '-n', NS];
    await waitReady(cp);
  });
  after(async () => {
    await cp?.stop();
    await stopSandbox(store);
  });

  it('two of three members\' PVCs lost: quorum restores from the survivor; every key on all three members, revision higher', async () => {
    const ips = await memberIPs(cp);
    await writeKeys(ips, 'app/', 300);
    await hosted(cp, 'POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'written-before-loss' }, data: { v: '1' } });
    const revBefore = await maxRevision(ips);
    await loseMembers(cp, ['etcd-1', 'etcd-2']);

    const dry = await cli(['quorum', '--dry-run', '-o', 'json']);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = json(dry);
    assert.equal(plan.kind, 'quorum');
    assert.equal(plan.restorePoint.kind, 'live');
    assert.equal(plan.restorePoint.member, 'etcd-0');
    assert.deepEqual(plan.observed.healthy, []);
    assert.equal(plan.warnings.filter((w: string) => /permission/.test(w)).length, 0, plan.warnings.join('\n'));
    const ids: string[] = plan.steps.map((s: { id: string }) => s.id);
    for (const s of ['capture-live', 'stage-snapshot', 'quiesce', 'stop-members', 'set-aside:etcd-1', 'restore:etcd-2', 'start-members', 'wait-healthy', 'verify-restored', 'resume']) assert.ok(ids.includes(s), s);

    const run = await cli(['quorum', '--yes', '-o', 'json', '--timeout', '300']);
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.equal(report.restorePoint.kind, 'live');
    assert.ok(report.revisionAfter > revBefore, `revision ${report.revisionAfter} > ${revBefore}`);
    // The run executed exactly the plan --dry-run printed.
    const journal = JSON.parse((await bucket(store).read(layout.recoveryJournal('etcd', report.id)))!.body.toString());
    assert.deepEqual(journal.plan.steps.map((s: { id: string }) => s.id), ids);
    assert.ok(journal.steps.every((s: { state: string }) => s.state === 'done'));
    assert.match(run.stderr, /job hcp-q\/etcd-.*-restore-etcd-1 started/);

    await assertRestored(cp, 'app/', 300, revBefore);
    await assertResumed(cp);
    await waitFor('hosted kube-apiserver serves again', async () => (await hosted(cp, 'GET', '/api/v1/namespaces/default/configmaps/written-before-loss').catch(() => undefined))?.data?.v === '1', 180_000, 1_000);
  });

  it('the flagship: the hosted kube-apiserver, run as a pod on the restored etcd, serves the objects created in it before the backup', async () => {
    await waitFor('hosted kube-apiserver ready', () => hosted(cp, 'GET', '/readyz').then(() => true, () => false), 180_000, 1_000);
    await hosted(cp, 'POST', '/api/v1/namespaces', { metadata: { name: 'tenant-a' } });
    for (let i = 0; i < 5; i++) await hosted(cp, 'POST', '/api/v1/namespaces/tenant-a/configmaps', { metadata: { name: `before-${i}` }, data: { i: String(i) } });
    const backup = await cli(['backup', 'create', '-o', 'json', '-q']);
    assert.equal(backup.code, 0, backup.stderr);
    const record = json(backup);
    await hosted(cp, 'POST', '/api/v1/namespaces/tenant-a/configmaps', { metadata: { name: 'after-backup' }, data: { lost: 'yes' } });
    const revBefore = await maxRevision(await memberIPs(cp));
    await loseMembers(cp, ['etcd-0', 'etcd-2']);

    const run = await cli(['quorum', '--yes', '--snapshot', record.name, '-o', 'json', '--timeout', '300']);
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.equal(report.restorePoint.kind, 'backup');
    assert.equal(report.restorePoint.name, record.name);
    assert.ok(report.revisionAfter > revBefore, 'revisions never go backwards for the hosted API server\'s watchers');

    const list = await waitFor('hosted kube-apiserver lists tenant-a', async () => (await hosted(cp, 'GET', '/api/v1/namespaces/tenant-a/configmaps').catch(() => undefined)), 180_000, 1_000);
    const names = list.items.map((c: { metadata: { name: string } }) => c.metadata.name).filter((n: string) => n !== 'kube-root-ca.crt').sort();
    assert.deepEqual(names, ['before-0', 'before-1', 'before-2', 'before-3', 'before-4'], 'objects from before the backup are served; the one after it is gone');
    const one = await hosted(cp, 'GET', '/api/v1/namespaces/tenant-a/configmaps/before-3');
    assert.equal(one.data.i, '3');
    // The restored API server works for writes too, at resource versions above the old ones.
    const created = await hosted(cp, 'POST', '/api/v1/namespaces/tenant-a/configmaps', { metadata: { name: 'after-restore' } });
    assert.ok(Number(created.metadata.resourceVersion) > revBefore);
  });

  it('killed after each step in turn, every rerun resumes; the last completes with nothing lost', async () => {
    await waitReady(cp);
    const ips = await memberIPs(cp);
    await writeKeys(ips, 'chain/', 200);
    const revBefore = await maxRevision(ips);
    await loseMembers(cp, ['etcd-1', 'etcd-2']);
    const plan = json(await cli(['quorum', '--dry-run', '-o', 'json']));
    const ids: string[] = plan.steps.map((s: { id: string }) => s.id);
    let recoveryId: string | undefined;
    const journalOf = async (id: string) => JSON.parse((await bucket(store).read(layout.recoveryJournal('etcd', id)))!.body.toString());
    let killed = 0;
    for (const [i, step] of ids.entries()) {
      // Per-member steps (set-aside:*, restore:*) run concurrently: the run is killed after the first
      // member's step, while its siblings are anywhere between not started and done.
      const group = step.includes(':') ? step.split(':')[0] : undefined;
      if (group && ids[i - 1]?.startsWith(`${group}:`)) continue;
      killed++;
      const crashed = await cli(['quorum', '--yes'], { ETCD_RECOVER_FAULT_AFTER_STEP: step });
      assert.notEqual(crashed.code, 0, `the run was killed after ${step}:\n${crashed.stderr}`);
      if (recoveryId) assert.match(crashed.stderr, new RegExp(`resuming recovery ${recoveryId}`), `the run killed after ${step} resumed`);
      recoveryId ??= (await Journal.findOpen(bucket(store), 'etcd'))?.id;
      assert.ok(recoveryId, 'the killed run left an open journal');
      const journal = await journalOf(recoveryId!);
      const done = journal.steps.filter((s: { state: string }) => s.state === 'done').map((s: { id: string }) => s.id);
      assert.ok(done.length < ids.length, 'killed before the journal said complete');
      if (step === 'quiesce') {
        const pause = await cp.kubeConfig().makeApiClient(CoreV1Api).readNamespacedConfigMap({ namespace: NS, name: 'hosted-cluster' });
        assert.equal(pause.data?.['paused'], 'true', 'reconciliation paused while etcd is down');
      }
    }
    assert.equal(killed, ids.length - 4, 'killed after every step but the concurrent siblings');
    const last = await cli(['quorum', '--yes', '-o', 'json', '--timeout', '300']);
    assert.equal(last.code, 0, last.stderr);
    const report = json(last);
    assert.equal(report.id, recoveryId);
    assert.equal(report.resumed, true);
    await assertRestored(cp, 'chain/', 200, revBefore);
    await assertResumed(cp);
  });

  it('an operator without the rights quorum needs gets every missing permission named, before any change', async () => {
    await waitReady(cp);
    const kc = cp.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'viewer' } } });
    await rbac.createNamespacedRole({
      namespace: NS,
      body: {
        metadata: { name: 'viewer' },
        rules: [
          { apiGroups: [''], resources: ['configmaps', 'secrets', 'pods', 'persistentvolumeclaims'], verbs: ['get', 'list'] },
          { apiGroups: [''], resources: ['pods/proxy'], verbs: ['get'] },
          { apiGroups: ['apps'], resources: ['statefulsets', 'deployments'], verbs: ['get'] },
        ],
      },
    });
    await rbac.createNamespacedRoleBinding({ namespace: NS, body: { metadata: { name: 'viewer' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'viewer' }, subjects: [{ kind: 'ServiceAccount', name: 'viewer', namespace: NS }] } });
    const viewer = await cp.kubeconfigForServiceAccount(NS, 'viewer');
    const before = await kc.makeApiClient(AppsV1Api).readNamespacedStatefulSet({ namespace: NS, name: 'etcd' });
    const r = await runCli(['quorum', '--yes', '--force', '--kubeconfig', viewer, '-n', NS], { timeoutMs: 300_000 });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /quorum needs permissions you do not have/);
    assert.match(r.stderr, /patch statefulsets\.apps "etcd" in namespace hcp-q/);
    assert.match(r.stderr, /create jobs\.batch in namespace hcp-q/);
    assert.match(r.stderr, /patch deployments\.apps "kube-apiserver" in namespace hcp-q/);
    assert.match(r.stderr, /patch configmaps "hosted-cluster" in namespace hcp-q/);
    assert.match(r.stderr, /Nothing was changed/);
    const after = await kc.makeApiClient(AppsV1Api).readNamespacedStatefulSet({ namespace: NS, name: 'etcd' });
    assert.equal(after.spec?.replicas, 3);
    assert.equal(after.metadata?.generation, before.metadata?.generation, 'the StatefulSet was not touched');
    const lock = await bucket(store).read(layout.lock('etcd'));
    assert.equal(lock, undefined, 'no lock taken');
  });
});

// ------------------------------------------------------------------ helpers

function bucket(store: Sandbox): S3ObjectStore {
  return new S3ObjectStore(store.s3Config());
}

/** The hosted control plane: a kube-apiserver whose only storage is the etcd above, and the object the contract pauses. */
function hostedControlPlane(): Record<string, any>[] {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const labels = { app: 'kube-apiserver' };
  return [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'hosted-cluster', namespace: NS }, data: { description: 'stands in for a HostedCluster: the contract pauses it' } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'hosted-sa', namespace: NS }, stringData: { 'sa.pub': publicKey, 'sa.key': privateKey, 'tokens.csv': `${HOSTED_TOKEN},admin,admin,system:masters\n` } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'kube-apiserver', namespace: NS, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [
              {
                name: 'kube-apiserver',
                image: `registry.k8s.io/kube-apiserver:${KUBE_VERSION}`,
                command: ['kube-apiserver'],
                args: [
                  `--etcd-servers=${MEMBERS.map((m) => `http://${m}.etcd-discovery.${NS}.svc:2379`).join(',')}`,
                  '--secure-port=6443',
                  '--advertise-address=$(POD_IP)',
                  '--cert-dir=/var/run/kube-apiserver',
                  '--service-account-issuer=https://kubernetes.default.svc',
                  '--service-account-key-file=/etc/hosted-sa/sa.pub',
                  '--service-account-signing-key-file=/etc/hosted-sa/sa.key',
                  '--service-cluster-ip-range=10.96.0.0/16',
                  '--authorization-mode=AlwaysAllow',
                  '--token-auth-file=/etc/hosted-sa/tokens.csv',
                  '--enable-priority-and-fairness=false',
                  '--profiling=false',
                  '--v=1',
                ],
                env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
                ports: [{ name: 'https', containerPort: 6443 }],
                readinessProbe: { httpGet: { path: '/readyz', port: 6443, scheme: 'HTTPS' }, periodSeconds: 2 },
                volumeMounts: [
                  { name: 'sa', mountPath: '/etc/hosted-sa', readOnly: true },
                  { name: 'certs', mountPath: '/var/run/kube-apiserver' },
                ],
              },
            ],
            volumes: [
              { name: 'sa', secret: { secretName: 'hosted-sa' } },
              { name: 'certs', emptyDir: {} },
            ],
          },
        },
      },
    },
  ];
}

/** A request to the hosted kube-apiserver (static admin token) at its pod's address. */
async function hosted(cp: ControlPlane, method: string, path: string, body?: unknown): Promise<any> {
  const pods = await cp.kubeConfig().makeApiClient(CoreV1Api).listNamespacedPod({ namespace: NS, labelSelector: 'app=kube-apiserver' });
  const pod = pods.items.find((p) => p.status?.phase === 'Running' && !p.metadata?.deletionTimestamp && p.status.podIP);
  if (!pod) throw new Error('no running hosted kube-apiserver pod');
  return new Promise((resolve, reject) => {
    const req = request(
      { host: pod.status!.podIP!, port: 6443, path, method, rejectUnauthorized: false, headers: { 'content-type': 'application/json', authorization: `Bearer ${HOSTED_TOKEN}` }, timeout: 10_000 },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          if ((res.statusCode ?? 500) >= 300) reject(new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`));
          else resolve(text.startsWith('{') ? JSON.parse(text) : text);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

async function waitReady(cp: ControlPlane): Promise<void> {
  const apps = cp.kubeConfig().makeApiClient(AppsV1Api);
  await waitFor('etcd 3/3 ready', async () => (await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).status?.readyReplicas === 3, 300_000, 500);
  let last = '';
  try {
    await waitFor('hosted kube-apiserver ready', () => hosted(cp, 'GET', '/readyz').then(() => true, (e: Error) => ((last = e.message), false)), 180_000, 1_000);
  } catch (e) {
    throw new Error(`${(e as Error).message} (last: ${last})\n${await cp.describePods(NS, 'app=kube-apiserver')}`);
  }
}

async function memberIPs(cp: ControlPlane): Promise<string[]> {
  return Promise.all(MEMBERS.map((m) => cp.podIP(NS, m)));
}

async function writeKeys(ips: string[], prefix: string, n: number): Promise<void> {
  const client = new Etcd3({ hosts: ips.map((ip) => `http://${ip}:2379`) });
  try {
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => client.put(`${prefix}${String(i + j).padStart(5, '0')}`).value(`v${i + j}`)));
  } finally {
    client.close();
  }
}

async function maxRevision(ips: string[]): Promise<number> {
  let max = 0;
  for (const ip of ips) {
    const c = new Etcd3({ hosts: `http://${ip}:2379` });
    try {
      max = Math.max(max, Number((await c.maintenance.status()).header.revision));
    } catch {
      /* down */
    } finally {
      c.close();
    }
  }
  return max;
}

/**
 * Two (or more) members lose their volumes: their PVCs are deleted (the protection finalizer holds
 * each until its pod is gone) and their pods with them; the StatefulSet brings the pods back on
 * empty volumes, where member-init refuses to bootstrap beside a survivor's data. Waits until the
 * plugin sees the quorum lost.
 */
async function loseMembers(cp: ControlPlane, members: string[]): Promise<void> {
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  for (const m of members) await core.deleteNamespacedPersistentVolumeClaim({ namespace: NS, name: PVC(m) });
  for (const m of members) await core.deleteNamespacedPod({ namespace: NS, name: m, gracePeriodSeconds: 0 });
  await waitFor('quorum lost', async () => {
    const st = await runCli(['status', '--kubeconfig', cp.kubeconfigPath, '-n', NS, '-o', 'json']);
    return st.stdout.startsWith('{') && json(st).quorum === false;
  }, 120_000, 1_000);
}

/** Every key under the prefix on every member (each asked alone), at a revision above `floor`. */
async function assertRestored(cp: ControlPlane, prefix: string, n: number, floor: number): Promise<void> {
  for (const ip of await memberIPs(cp)) {
    const c = new Etcd3({ hosts: `http://${ip}:2379` });
    try {
      const got = await c.getAll().prefix(prefix).strings();
      assert.equal(Object.keys(got).length, n, `${ip}: keys under ${prefix}`);
      assert.equal(got[`${prefix}00007`], 'v7');
      const rev = Number((await c.maintenance.status()).header.revision);
      assert.ok(rev > floor, `${ip}: revision ${rev} > ${floor}`);
    } finally {
      c.close();
    }
  }
}

/** Dependents back at their replicas, reconciliation resumed, no recovery annotation left. */
async function assertResumed(cp: ControlPlane): Promise<void> {
  const kc = cp.kubeConfig();
  const dep = await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace: NS, name: 'kube-apiserver' });
  assert.equal(dep.spec?.replicas, 1);
  assert.equal(dep.metadata?.annotations?.['etcd-recover.io/replicas-before'], undefined);
  const sts = await kc.makeApiClient(AppsV1Api).readNamespacedStatefulSet({ namespace: NS, name: 'etcd' });
  assert.equal(sts.spec?.replicas, 3);
  const pause = await kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ namespace: NS, name: 'hosted-cluster' });
  assert.equal(pause.data?.['paused'], undefined);
}
