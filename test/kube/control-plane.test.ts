import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  AppsV1Api,
  AuthorizationV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  type V1Job,
  type V1Pod,
} from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import { applyManifests, pluginBin, startControlPlane, waitFor, type ControlPlane } from '../support/kube/index.js';

/**
 * Proof that the harness is a real Kubernetes: real kube-apiserver, controller-manager and scheduler
 * (v1.34.4 builds), with pods run by the process kubelet. Every assertion is an outcome produced by
 * the real controllers (StatefulSet, PV binder/provisioner, PVC protection, Job, CronJob, RBAC).
 */
const NS = 'harness';
const AGENT_IMAGE = 'ghcr.io/etcd-recover/agent:0.1.0';

const isReady = (p: V1Pod | undefined) => !!p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
const code = (e: unknown) => (e as { code?: number }).code;

async function gone(fn: () => Promise<unknown>): Promise<boolean> {
  try {
    await fn();
    return false;
  } catch (e) {
    if (code(e) === 404) return true;
    throw e;
  }
}

/** A single-endpoint etcd3 client per call (the library's circuit breaker blocks a client ~5 s after a refused connection). */
async function withEtcd<T>(endpoints: string | string[], fn: (c: Etcd3) => Promise<T>): Promise<T> {
  const c = new Etcd3({ hosts: endpoints, dialTimeout: 2_000 });
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

/** The agent command the CronJob runs: `--version` if the CLI supports it here, else `--help`. */
function agentProbe(): { args: string[]; expected: string } {
  for (const args of [['--version'], ['--help']]) {
    const r = spawnSync(pluginBin, args, { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0 && r.stdout.trim()) return { args, expected: r.stdout.trim() };
  }
  throw new Error(`${pluginBin} --version and --help both fail on the host: the agent image has nothing to run`);
}

describe('kube harness: real control plane + process kubelet', function () {
  this.timeout(180_000);
  let cp: ControlPlane;
  let kc: KubeConfig;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let batch: BatchV1Api;
  let agent: { args: string[]; expected: string };

  before(async function () {
    this.timeout(2_400_000); // on a cold cache this waits for setup's background build of the binaries
    cp = await startControlPlane();
    console.log(`      control plane ready in ${cp.readyMs} ms (${cp.server}, node ${cp.nodeName}, pods ${cp.network.podCIDR})`);
    kc = cp.kubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
    batch = kc.makeApiClient(BatchV1Api);
    agent = agentProbe();
    await applyManifests(kc, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } }]);
    await waitFor('default ServiceAccount in the test namespace', () => core.readNamespacedServiceAccount({ name: 'default', namespace: NS }), 30_000);
    // The every-minute CronJob is created now so its first schedule passes while the other tests run.
    await applyManifests(kc, [
      {
        apiVersion: 'batch/v1',
        kind: 'CronJob',
        metadata: { name: 'agent', namespace: NS },
        spec: {
          schedule: '* * * * *',
          concurrencyPolicy: 'Forbid',
          successfulJobsHistoryLimit: 3,
          jobTemplate: {
            metadata: { labels: { app: 'agent' } },
            spec: {
              backoffLimit: 0,
              template: {
                metadata: { labels: { app: 'agent' } },
                spec: {
                  restartPolicy: 'Never',
                  containers: [{ name: 'agent', image: AGENT_IMAGE, args: agent.args }],
                },
              },
            },
          },
        },
      },
    ]);
  });

  after(async function () {
    this.timeout(60_000);
    await cp?.stop();
  });

  it('runs a 3-member etcd StatefulSet that is a healthy cluster, and brings back a deleted member on its PVC', async function () {
    this.timeout(240_000);
    await applyManifests(kc, `
apiVersion: v1
kind: Service
metadata: {name: etcd-discovery, namespace: ${NS}}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: etcd}
  ports: [{name: peer, port: 2380}, {name: etcd-client, port: 2379}]
---
apiVersion: v1
kind: Service
metadata: {name: etcd-client, namespace: ${NS}}
spec:
  selector: {app: etcd}
  ports: [{name: etcd-client, port: 2379}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: etcd, namespace: ${NS}}
spec:
  serviceName: etcd-discovery
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: etcd}}
  template:
    metadata: {labels: {app: etcd}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: etcd
        image: registry.k8s.io/etcd:3.6.16-0
        command: ["/bin/sh", "-c"]
        args:
        - |
          CLUSTER=""
          for i in 0 1 2; do
            CLUSTER="\${CLUSTER}\${CLUSTER:+,}etcd-\${i}=http://etcd-\${i}.etcd-discovery.\${NAMESPACE}.svc:2380"
          done
          exec /usr/local/bin/etcd \\
            --name="\${HOSTNAME}" \\
            --data-dir=/var/lib/data \\
            --initial-cluster="\${CLUSTER}" \\
            --initial-cluster-state=new \\
            --initial-cluster-token=etcd-\${NAMESPACE} \\
            --listen-client-urls=http://0.0.0.0:2379 \\
            --advertise-client-urls=http://\${HOSTNAME}.etcd-discovery.\${NAMESPACE}.svc:2379 \\
            --listen-peer-urls=http://0.0.0.0:2380 \\
            --initial-advertise-peer-urls=http://\${HOSTNAME}.etcd-discovery.\${NAMESPACE}.svc:2380 \\
            --unsafe-no-fsync
        env:
        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        ports:
        - {name: client, containerPort: 2379}
        - {name: peer, containerPort: 2380}
        readinessProbe:
          httpGet: {path: /readyz, port: client}
          periodSeconds: 2
          failureThreshold: 3
        volumeMounts:
        - {name: data, mountPath: /var/lib}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`);
    const t0 = Date.now();
    await waitFor('StatefulSet etcd 3/3 ready', async () => {
      const s = await apps.readNamespacedStatefulSet({ name: 'etcd', namespace: NS });
      return s.status?.readyReplicas === 3;
    }, 150_000, 500);
    console.log(`      etcd StatefulSet 3/3 ready in ${Date.now() - t0} ms`);

    // Each member has its own PVC from the volumeClaimTemplate, bound by the PV controller to a hostPath PV.
    for (const i of [0, 1, 2]) {
      const pvc = await core.readNamespacedPersistentVolumeClaim({ name: `data-etcd-${i}`, namespace: NS });
      assert.equal(pvc.status?.phase, 'Bound');
      assert.equal(pvc.spec?.storageClassName, 'standard');
    }

    // Query the cluster from the test process at the pods' own IPs (no port-forward, no proxy).
    const ips = await Promise.all([0, 1, 2].map((i) => cp.podIP(NS, `etcd-${i}`)));
    assert.equal(new Set(ips).size, 3, `three distinct pod IPs: ${ips}`);
    const statuses = await Promise.all(ips.map((ip) => withEtcd(`http://${ip}:2379`, (c) => c.maintenance.status())));
    const leaders = new Set(statuses.map((s) => s.leader));
    assert.equal(leaders.size, 1, 'all members agree on one leader');
    assert.ok(statuses.some((s) => s.header.member_id === s.leader), 'the leader is one of the three');
    const members = await withEtcd(`http://${ips[0]}:2379`, (c) => c.cluster.memberList({}));
    assert.deepEqual(members.members.map((m) => m.name).sort(), ['etcd-0', 'etcd-1', 'etcd-2']);
    for (const m of members.members) assert.match(m.peerURLs[0]!, new RegExp(`^http://${m.name}\\.etcd-discovery\\.${NS}\\.svc:2380$`));

    await withEtcd(ips.map((ip) => `http://${ip}:2379`), async (c) => {
      for (let i = 0; i < 20; i++) await c.put(`harness/k${i}`).value(`v${i}`);
    });

    // Delete etcd-1: the StatefulSet controller recreates it with the same identity on the same PVC.
    const old = await core.readNamespacedPod({ name: 'etcd-1', namespace: NS });
    const oldMemberId = statuses[1]!.header.member_id;
    const oldVolume = (await core.readNamespacedPersistentVolumeClaim({ name: 'data-etcd-1', namespace: NS })).spec?.volumeName;
    await core.deleteNamespacedPod({ name: 'etcd-1', namespace: NS });
    const fresh = await waitFor('a new etcd-1 pod, Ready', async () => {
      const p = await core.readNamespacedPod({ name: 'etcd-1', namespace: NS });
      return p.metadata?.uid !== old.metadata?.uid && isReady(p) ? p : undefined;
    }, 90_000, 500);
    const claim = fresh.spec?.volumes?.find((v) => v.name === 'data')?.persistentVolumeClaim?.claimName;
    assert.equal(claim, 'data-etcd-1');
    assert.equal((await core.readNamespacedPersistentVolumeClaim({ name: 'data-etcd-1', namespace: NS })).spec?.volumeName, oldVolume);
    const ip1 = fresh.status!.podIP!;
    const after = await waitFor('etcd-1 answers', () => withEtcd(`http://${ip1}:2379`, (c) => c.maintenance.status()), 30_000, 500);
    assert.equal(after.header.member_id, oldMemberId, 'same member ID: the data dir came back from the PVC');
    const value = await withEtcd(`http://${ip1}:2379`, (c) => c.get('harness/k7').serializable(true).string());
    assert.equal(value, 'v7', 'the key written before the deletion is in the new pod’s local data');
    const sts = await apps.readNamespacedStatefulSet({ name: 'etcd', namespace: NS });
    assert.equal(sts.status?.readyReplicas, 3);
  });

  it('keeps a PVC whose pod is running (kubernetes.io/pvc-protection) until the pod is gone', async function () {
    this.timeout(120_000);
    await applyManifests(kc, `
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: protected, namespace: ${NS}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: pvc-user, namespace: ${NS}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo data > /data/file && exec sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: protected}}]
`);
    await waitFor('pod pvc-user Ready', async () => isReady(await core.readNamespacedPod({ name: 'pvc-user', namespace: NS })), 60_000);
    const pvName = (await core.readNamespacedPersistentVolumeClaim({ name: 'protected', namespace: NS })).spec!.volumeName!;
    const pv = await core.readPersistentVolume({ name: pvName });
    const hostDir = pv.spec!.hostPath!.path;
    // Ready means started, not that the shell has run its `echo` yet: wait for the file.
    await waitFor(`the pod wrote into the PV's host directory ${hostDir}`, async () => existsSync(join(hostDir, 'file')), 30_000);

    await core.deleteNamespacedPersistentVolumeClaim({ name: 'protected', namespace: NS });
    const pvc = await core.readNamespacedPersistentVolumeClaim({ name: 'protected', namespace: NS });
    assert.ok(pvc.metadata?.deletionTimestamp, 'the PVC is being deleted');
    assert.ok(pvc.metadata?.finalizers?.includes('kubernetes.io/pvc-protection'), `finalizers: ${pvc.metadata?.finalizers}`);
    await new Promise((r) => setTimeout(r, 3_000));
    const still = await core.readNamespacedPersistentVolumeClaim({ name: 'protected', namespace: NS });
    assert.equal(still.metadata?.uid, pvc.metadata?.uid, 'still there while the pod runs');

    await core.deleteNamespacedPod({ name: 'pvc-user', namespace: NS });
    await waitFor('pod pvc-user gone', () => gone(() => core.readNamespacedPod({ name: 'pvc-user', namespace: NS })), 30_000);
    await waitFor('PVC protected gone', () => gone(() => core.readNamespacedPersistentVolumeClaim({ name: 'protected', namespace: NS })), 60_000);
    // Reclaim policy Delete: the PV controller deletes the volume (and the hostPath deleter its directory).
    await waitFor(`PV ${pvName} gone`, () => gone(() => core.readPersistentVolume({ name: pvName })), 60_000);
  });

  it('runs a Job made from the CronJob template (kubectl create job --from=cronjob/agent) with the agent image', async function () {
    this.timeout(120_000);
    const cj = await batch.readNamespacedCronJob({ name: 'agent', namespace: NS });
    // What `kubectl create job manual --from=cronjob/agent` sends.
    const job: V1Job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name: 'agent-manual',
        namespace: NS,
        labels: cj.spec!.jobTemplate.metadata?.labels,
        annotations: { 'cronjob.kubernetes.io/instantiate': 'manual' },
        ownerReferences: [{ apiVersion: 'batch/v1', kind: 'CronJob', name: 'agent', uid: cj.metadata!.uid!, controller: true }],
      },
      spec: cj.spec!.jobTemplate.spec,
    };
    await batch.createNamespacedJob({ namespace: NS, body: job });
    const done = await waitFor('Job agent-manual finished', async () => {
      const j = await batch.readNamespacedJob({ name: 'agent-manual', namespace: NS });
      return (j.status?.succeeded ?? 0) + (j.status?.failed ?? 0) > 0 ? j : undefined;
    }, 90_000, 500);
    const pods = await core.listNamespacedPod({ namespace: NS, labelSelector: 'batch.kubernetes.io/job-name=agent-manual' });
    assert.equal(pods.items.length, 1);
    const pod = pods.items[0]!;
    const log = cp.logsOf(NS, pod.metadata!.name!);
    assert.equal(done.status?.succeeded, 1, `Job failed; pod log:\n${log}`);
    assert.equal(pod.status?.phase, 'Succeeded');
    assert.equal(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0);
    assert.equal(log.trim(), agent.expected, 'the pod log holds the CLI output');
    // The same log through the API server (pods/log → the kubelet's /containerLogs).
    const viaApi = await core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: NS, container: 'agent' });
    assert.equal(viaApi.trim(), agent.expected);
    assert.ok(done.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True'));
  });

  it('behaves like a kubelet: init order, sidecars, volumes, restarts and back-off, probes, Jobs, Deployments, Service names, logs', async function () {
    this.timeout(120_000);
    await applyManifests(kc, `
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: ${NS}}
stringData: {user: admin, pass: hunter2}
---
apiVersion: v1
kind: Pod
metadata: {name: lifecycle, namespace: ${NS}, labels: {tier: demo}}
spec:
  terminationGracePeriodSeconds: 30
  hostAliases: [{ip: 10.1.2.3, hostnames: [legacy.example]}]
  initContainers:
  - {name: init1, image: busybox, command: [sh, -c, "echo init1 > /work/order; sleep 1"], volumeMounts: [{name: work, mountPath: /work}]}
  - {name: init2, image: busybox, command: [sh, -c, "echo init2 >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  - name: sidecar
    image: busybox
    restartPolicy: Always
    command: [sh, -c, "echo sidecar >> /work/order; exec sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: busybox
    workingDir: /work
    command: [sh, -c]
    args:
    - |
      cat order; echo "user=$(cat /creds/u)"; echo "pass=$(cat /etc/app/pass)"; echo "labels=$(cat /podinfo/labels)"
      touch /creds/x 2>/dev/null || echo "creds read-only"; echo "pwd=$(pwd)"; echo "expanded=$(B)"
      getent hosts legacy.example; trap 'echo "got SIGTERM"; exit 0' TERM; while true; do sleep 0.2; done
    env: [{name: A, value: x}, {name: B, value: "$(A)-y"}]
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: creds, mountPath: /creds}
    - {name: all-creds, mountPath: /etc/app/pass, subPath: pass}
    - {name: podinfo, mountPath: /podinfo}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: creds, secret: {secretName: creds, items: [{key: user, path: u}]}}
  - {name: all-creds, secret: {secretName: creds}}
  - {name: podinfo, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: ${NS}}
spec:
  containers: [{name: c, image: busybox, command: [sh, -c, "echo run; exit 3"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: unhealthy, namespace: ${NS}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
    livenessProbe: {exec: {command: [sh, -c, "exit 1"]}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: deadline, namespace: ${NS}}
spec:
  activeDeadlineSeconds: 2
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: failing, namespace: ${NS}}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox, command: [sh, -c, "exit 2"]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kv, namespace: ${NS}}
spec:
  replicas: 2
  selector: {matchLabels: {app: kv}}
  template:
    metadata: {labels: {app: kv}}
    spec:
      containers:
      - name: etcd
        image: registry.k8s.io/etcd:3.6.16-0
        command: [etcd, --data-dir=/data, --listen-client-urls=http://0.0.0.0:2379, --advertise-client-urls=http://$(POD_IP):2379, --unsafe-no-fsync]
        env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
        readinessProbe: {httpGet: {path: /readyz, port: 2379}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: kv, namespace: ${NS}}
spec: {selector: {app: kv}, ports: [{port: 2379}]}
`);
    const pod = (name: string) => core.readNamespacedPod({ name, namespace: NS });

    // Init containers in order, then the sidecar, then main; volumes as declared.
    await waitFor('pod lifecycle Ready', async () => isReady(await pod('lifecycle')), 60_000);
    const lc = await pod('lifecycle');
    assert.deepEqual(lc.status?.initContainerStatuses?.map((s) => [s.name, Object.keys(s.state ?? {})[0]]), [['init1', 'terminated'], ['init2', 'terminated'], ['sidecar', 'running']]);
    await waitFor('lifecycle output', async () => cp.logsOf(NS, 'lifecycle').includes('legacy.example'), 10_000);
    const out = cp.logsOf(NS, 'lifecycle');
    assert.match(out, /^init1\ninit2\nsidecar\nuser=admin\npass=hunter2\nlabels=tier="demo"\ncreds read-only\npwd=\/work\nexpanded=x-y\n10\.1\.2\.3\s+legacy\.example/);

    // restartPolicy Always: the first restart at once, then CrashLoopBackOff with the last exit code.
    const crashed = await waitFor('crasher in CrashLoopBackOff', async () => {
      const s = (await pod('crasher')).status?.containerStatuses?.[0];
      return s?.state?.waiting?.reason === 'CrashLoopBackOff' ? s : undefined;
    }, 30_000);
    assert.ok(crashed.restartCount >= 1);
    assert.equal(crashed.lastState?.terminated?.exitCode, 3);
    // Previous run's log through the API server (pods/log → kubelet /containerLogs).
    assert.equal((await core.readNamespacedPodLog({ name: 'crasher', namespace: NS, previous: true })).trim(), 'run');

    // A failing liveness probe kills and restarts the container.
    const unhealthy = await waitFor('unhealthy restarted by its liveness probe', async () => {
      const s = (await pod('unhealthy')).status?.containerStatuses?.[0];
      return (s?.restartCount ?? 0) >= 1 ? s : undefined;
    }, 30_000);
    assert.equal(unhealthy.lastState?.terminated?.signal, 15);

    // activeDeadlineSeconds ends the pod as Failed/DeadlineExceeded.
    await waitFor('deadline pod Failed', async () => (await pod('deadline')).status?.reason === 'DeadlineExceeded', 30_000);
    assert.equal((await pod('deadline')).status?.phase, 'Failed');

    // restartPolicy Never + backoffLimit 1: two failed pods, then the Job controller fails the Job.
    const failed = await waitFor('Job failing Failed', async () => {
      const j = await batch.readNamespacedJob({ name: 'failing', namespace: NS });
      return j.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True') ? j : undefined;
    }, 60_000);
    assert.equal(failed.status?.failed, 2);

    // Readiness probes gate Deployment availability; the Service name resolves (hosts file) to ready endpoints.
    await waitFor('Deployment kv Available', async () => {
      const d = await apps.readNamespacedDeployment({ name: 'kv', namespace: NS });
      return d.status?.availableReplicas === 2;
    }, 60_000);
    await applyManifests(kc, `
apiVersion: v1
kind: Pod
metadata: {name: kv-client, namespace: ${NS}}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: registry.k8s.io/etcd:3.6.16-0, command: [sh, -c, "etcdctl --endpoints=http://kv:2379,http://kv.${NS}.svc.cluster.local:2379 endpoint health"]}
`);
    await waitFor('kv-client Succeeded', async () => (await pod('kv-client')).status?.phase === 'Succeeded', 30_000);
    assert.match(cp.logsOf(NS, 'kv-client'), /http:\/\/kv:2379 is healthy/);

    // Graceful deletion: SIGTERM reaches the process group, which exits at once (well before the 30 s grace).
    const t = Date.now();
    await core.deleteNamespacedPod({ name: 'lifecycle', namespace: NS });
    await waitFor('lifecycle gone', () => gone(() => pod('lifecycle')), 20_000);
    assert.ok(Date.now() - t < 10_000);
    assert.match(cp.logsOf(NS, 'lifecycle'), /got SIGTERM/);
  });

  it('schedules a Job from a `* * * * *` CronJob on its own (the real cronjob controller)', async function () {
    this.timeout(150_000);
    const cj = await batch.readNamespacedCronJob({ name: 'agent', namespace: NS });
    const job = await waitFor('a scheduled Job owned by CronJob agent that succeeded', async () => {
      const jobs = await batch.listNamespacedJob({ namespace: NS });
      return jobs.items.find(
        (j) =>
          j.metadata?.annotations?.['cronjob.kubernetes.io/instantiate'] !== 'manual' &&
          j.metadata?.ownerReferences?.some((o) => o.uid === cj.metadata?.uid) &&
          (j.status?.succeeded ?? 0) === 1,
      );
    }, 130_000, 1_000);
    assert.match(job.metadata!.name!, /^agent-\d+$/, 'named <cronjob>-<scheduled minute>');
    const after = await batch.readNamespacedCronJob({ name: 'agent', namespace: NS });
    assert.ok(after.status?.lastScheduleTime, 'lastScheduleTime set by the controller');
    const pods = await core.listNamespacedPod({ namespace: NS, labelSelector: `batch.kubernetes.io/job-name=${job.metadata!.name}` });
    assert.equal(cp.logsOf(NS, pods.items[0]!.metadata!.name!).trim(), agent.expected);
    // Stop it scheduling more while the remaining tests run.
    await KubernetesObjectApi.makeApiClient(kc).patch(
      { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'agent', namespace: NS }, spec: { suspend: true } },
      undefined, undefined, undefined, undefined, PatchStrategy.MergePatch,
    );
  });

  it('enforces a narrow Role for a ServiceAccount: SelfSubjectAccessReview, real 403s, and in-cluster credentials in a pod', async function () {
    this.timeout(120_000);
    await applyManifests(kc, `
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: ${NS}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: ${NS}}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-pod-reader, namespace: ${NS}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: reader, namespace: ${NS}}]
---
apiVersion: v1
kind: Secret
metadata: {name: top-secret, namespace: ${NS}}
stringData: {password: hunter2}
`);
    const saKc = new KubeConfig();
    saKc.loadFromFile(await cp.kubeconfigForServiceAccount(NS, 'reader'));
    const authz = saKc.makeApiClient(AuthorizationV1Api);
    const can = async (verb: string, resource: string) =>
      (await authz.createSelfSubjectAccessReview({
        body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { namespace: NS, verb, resource } } },
      })).status?.allowed;
    assert.equal(await can('list', 'pods'), true);
    assert.equal(await can('get', 'pods'), true);
    assert.equal(await can('delete', 'pods'), false);
    assert.equal(await can('get', 'secrets'), false);

    const saCore = saKc.makeApiClient(CoreV1Api);
    const listed = await saCore.listNamespacedPod({ namespace: NS });
    assert.ok(listed.items.some((p) => p.metadata?.name === 'etcd-0'), 'allowed: list pods');
    await assert.rejects(saCore.deleteNamespacedPod({ name: 'etcd-0', namespace: NS }), (e) => code(e) === 403);
    await assert.rejects(saCore.readNamespacedSecret({ name: 'top-secret', namespace: NS }), (e) => code(e) === 403);
    assert.ok(isReady(await core.readNamespacedPod({ name: 'etcd-0', namespace: NS })), 'etcd-0 survived the denied delete');

    // Inside a pod: the projected token + ca.crt at /var/run/secrets/kubernetes.io/serviceaccount and
    // KUBERNETES_SERVICE_HOST/PORT are enough for an in-cluster client (kubectl here).
    await applyManifests(kc, `
apiVersion: v1
kind: Pod
metadata: {name: in-cluster, namespace: ${NS}}
spec:
  serviceAccountName: reader
  restartPolicy: Never
  containers:
  - name: kubectl
    image: debian
    command: ["sh", "-c", "kubectl get pod etcd-0 -o name; kubectl get secret top-secret 2>&1; kubectl auth whoami -o jsonpath='{.status.userInfo.username}'; echo"]
`);
    await waitFor('pod in-cluster Succeeded', async () => (await core.readNamespacedPod({ name: 'in-cluster', namespace: NS })).status?.phase === 'Succeeded', 60_000);
    const log = cp.logsOf(NS, 'in-cluster');
    assert.match(log, /^pod\/etcd-0$/m);
    assert.match(log, /Forbidden.*secrets "top-secret" is forbidden: User "system:serviceaccount:harness:reader" cannot get resource "secrets"/);
    assert.match(log, /^system:serviceaccount:harness:reader$/m);
  });
});
