import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { AppsV1Api, BatchV1Api, CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import { Journal, S3ObjectStore, layout, type Sandbox } from '@etcd-recover/core';
import { applyManifests, waitFor, KUBE_VERSION, type ControlPlane } from '../support/kube/index.js';
import { declaredCluster, loseMembers as loseMembersOf, memberIPs as memberIPsOf, writeKeys } from '../support/declared-cluster.js';
import { stopSandbox } from '../support/sandbox.js';
import { hostedApiserverManifests, hostedFrontDoor, hostedKubeconfig, hostedRequest } from '../support/hosted-apiserver.js';
import { json, runCli, type CliResult } from '../support/cli.js';

const NS = 'hcp-q';
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];
const PVC = (m: string) => `data-${m}`;
const HOSTED_TOKEN = 'hosted-admin-token';
const KCM = 'kube-controller-manager';

/**
 * `kubectl etcd-recover quorum` against the EtcdCluster component's resources on a real control
 * plane: a 3-member etcd StatefulSet, a hosted kube-apiserver Deployment that stores its objects in
 * it (declared as the dependent to scale down), a pause object, MinIO as the bucket. Every etcd-side
 * step runs as a Job in the cluster; the plugin talks only to the API server — and, after the
 * restore, to the hosted API server through the admin kubeconfig the contract names (at its
 * external address, a forwarder on this machine), where a hosted kube-controller-manager (CronJob and
 * Job controllers) runs as the contract's control-plane Deployment to roll out.
 */
describe('quorum on Kubernetes (real control plane)', function () {
  this.timeout(900_000);
  let cp: ControlPlane;
  let store: Sandbox;
  let kube: string[];
  let door: Awaited<ReturnType<typeof hostedFrontDoor>>;

  const cli = (args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult> => runCli([...args, ...kube], { timeoutMs: 900_000, ...(env ? { env } : {}) });

  before(async function () {
    this.timeout(2_400_000); // on a cold cache this waits for setup's background build of the binaries
    ({ cp, store } = await declaredCluster(NS, {
      // The heal CronJob exists (member replace runs as its Job; it is suspended during quorum) but
      // never fires on its own during the suite.
      autoHeal: { enabled: true, schedule: '0 0 1 1 *' },
      dependents: [{ kind: 'Deployment', name: 'kube-apiserver', replicas: 1 }],
      pause: { apiVersion: 'v1', kind: 'ConfigMap', resource: 'configmaps', name: 'hosted-cluster', pausePatch: { data: { paused: 'true' } }, resumePatch: { data: { paused: null } } },
      // After the restore: the hosted cluster through its admin kubeconfig; its controller-manager restarted.
      afterRestore: { hostedKubeconfigSecret: 'hosted-admin-kubeconfig', rolloutDeployments: [KCM], stuckPodSeconds: 15 },
    }));
    await applyManifests(cp.kubeConfig(), hostedControlPlane());
    // The plugin runs outside the cluster: its kubeconfig names the hosted API server's external address.
    door = await hostedFrontDoor(cp, NS);
    await applyManifests(cp.kubeConfig(), [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'hosted-admin-kubeconfig', namespace: NS }, stringData: { kubeconfig: hostedKubeconfig(door.url, HOSTED_TOKEN) } }]);
    kube = ['--kubeconfig', cp.kubeconfigPath, '-n', NS];
    await waitReady(cp);
  });
  after(async () => {
    await door?.close();
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

    // One CronJob was suspended by its owner beforehand: it must stay so after the recovery.
    await setSuspend(cp, 'etcd-verify', true);
    const cronsBefore = await cronSuspends(cp);
    assert.deepEqual(cronsBefore, { 'etcd-backup': false, 'etcd-verify': true, 'etcd-heal': false });

    // A volume too small for the restore: etcd-1's new (empty) PV folder becomes a 8 MiB tmpfs.
    const survivorRev = await maxRevision([ips[0]!]);
    const small = await hostPathOf(cp, PVC('etcd-1'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', small]);
    let refused: CliResult;
    try {
      refused = await cli(['quorum', '--yes']);
    } finally {
      execFileSync('umount', ['-l', small]);
    }
    assert.equal(refused.code, 11, refused.stderr);
    const m = /PVC hcp-q\/data-etcd-1 \(etcd-1\) needs (\d+) bytes \(snapshot (\d+) \+ restored DB (\d+) \+ WAL (\d+); old data stays set aside in place\) but has (\d+) bytes free/.exec(refused.stderr);
    assert.ok(m, refused.stderr);
    const [need, snap, db, wal, free] = m.slice(1).map(Number) as [number, number, number, number, number];
    assert.equal(need, snap + db + wal);
    assert.ok(free <= 8 * 1024 * 1024 && free < need);
    assert.match(refused.stderr, /nothing was stopped or changed/);
    const errorLine = refused.stderr.split('\n').find((l) => l.startsWith('error:')) ?? '';
    assert.doesNotMatch(errorLine, /data-etcd-[02]/, 'only the short volume is refused');
    assert.match(refused.stderr, /PVC hcp-q\/data-etcd-0 \(etcd-0\): .* free, the restore needs/, 'every volume was measured');
    // Nothing was stopped: etcd, the hosted API server, reconciliation and the CronJobs are as they were.
    const apps = cp.kubeConfig().makeApiClient(AppsV1Api);
    assert.equal((await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).spec?.replicas, 3);
    assert.equal((await apps.readNamespacedDeployment({ namespace: NS, name: 'kube-apiserver' })).spec?.replicas, 1);
    assert.equal((await cp.kubeConfig().makeApiClient(CoreV1Api).readNamespacedConfigMap({ namespace: NS, name: 'hosted-cluster' })).data?.['paused'], undefined);
    assert.deepEqual(await cronSuspends(cp), cronsBefore);
    assert.equal(await maxRevision([ips[0]!]), survivorRev, 'the survivor still serves its data, untouched');

    // With room, the same command resumes. While it runs, the auto-heal CronJob's Job fires: it finds
    // the recovery lock held and changes nothing; the component's CronJobs are suspended meanwhile.
    const running = cli(['quorum', '--yes', '-o', 'json', '--timeout', '300']);
    await waitFor('the recovery holds the lock', async () => Boolean(await bucket(store).read(layout.lock('etcd'))), 120_000, 250);
    const healLog = await runHealJob(cp, 'etcd-heal-during-quorum');
    assert.equal(healLog.succeeded, true, healLog.log);
    assert.match(healLog.log, /a recovery holds the lock: quorum rec-/);
    const suspended = await waitFor('the CronJobs suspended during the restore', async () => {
      const now = await cronSuspends(cp);
      return Object.values(now).every(Boolean) ? now : undefined;
    }, 300_000, 250);
    assert.deepEqual(suspended, { 'etcd-backup': true, 'etcd-verify': true, 'etcd-heal': true });
    const run = await running;
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.equal(report.restorePoint.kind, 'live');
    assert.ok(report.revisionAfter > revBefore, `revision ${report.revisionAfter} > ${revBefore}`);
    assert.deepEqual(await cronSuspends(cp), cronsBefore, 'every CronJob back as it was, the owner-suspended one still suspended');
    await assertCronJobsClean(cp);
    await setSuspend(cp, 'etcd-verify', false);
    // The run executed exactly the plan --dry-run printed.
    const journal = JSON.parse((await bucket(store).read(layout.recoveryJournal('etcd', report.id)))!.body.toString());
    assert.deepEqual(journal.plan.steps.map((s: { id: string }) => s.id), ids);
    assert.ok(journal.steps.every((s: { state: string }) => s.state === 'done'));
    assert.match(run.stderr, /job hcp-q\/etcd-.*-restore-etcd-1 started/);

    await assertRestored(cp, 'app/', 300, revBefore);
    await assertResumed(cp);
    await waitFor('hosted kube-apiserver serves again', async () => (await hosted(cp, 'GET', '/api/v1/namespaces/default/configmaps/written-before-loss').catch(() => undefined))?.data?.v === '1', 180_000, 1_000);
  });

  it('the flagship: the hosted kube-apiserver, run as a pod on the restored etcd, serves the objects created in it before the backup; its stuck CronJob schedules again', async () => {
    await waitFor('hosted kube-apiserver ready', () => hosted(cp, 'GET', '/readyz').then(() => true, () => false), 180_000, 1_000);
    await hosted(cp, 'POST', '/api/v1/namespaces', { metadata: { name: 'tenant-a' } });
    for (let i = 0; i < 5; i++) await hosted(cp, 'POST', '/api/v1/namespaces/tenant-a/configmaps', { metadata: { name: `before-${i}` }, data: { i: String(i) } });
    // What a restore brings back stuck. A CronJob the hosted controller-manager would start every
    // minute, whose status.lastScheduleTime lies hours ahead (written by a controller whose clock ran
    // ahead): the CronJob controller schedules nothing before that time, and the snapshot keeps it so.
    // Its Jobs are created suspended (the hosted cluster has no nodes to run them).
    await hosted(cp, 'POST', '/api/v1/namespaces/tenant-a/serviceaccounts', { metadata: { name: 'default' } });
    await hosted(cp, 'POST', '/apis/batch/v1/namespaces/tenant-a/cronjobs', {
      metadata: { name: 'report' },
      // Created suspended, so that no minute boundary passes before its status is set.
      spec: { suspend: true, schedule: '* * * * *', jobTemplate: { spec: { suspend: true, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'report', image: 'busybox' }] } } } } },
    });
    const future = new Date(Date.now() + 3 * 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z');
    await hostedStatus(cp, '/apis/batch/v1/namespaces/tenant-a/cronjobs/report', (st) => ({ ...st, lastScheduleTime: future }));
    const cj = await hosted(cp, 'GET', '/apis/batch/v1/namespaces/tenant-a/cronjobs/report');
    cj.spec.suspend = false;
    await hosted(cp, 'PUT', '/apis/batch/v1/namespaces/tenant-a/cronjobs/report', cj);
    // And a pod bound to a node that never started it (the node is gone): ContainerCreating for good.
    await hosted(cp, 'POST', '/api/v1/namespaces/tenant-a/pods', { metadata: { name: 'stuck-worker' }, spec: { nodeName: 'node-lost', automountServiceAccountToken: false, containers: [{ name: 'w', image: 'busybox' }] } });
    await hostedStatus(cp, '/api/v1/namespaces/tenant-a/pods/stuck-worker', () => ({
      phase: 'Pending',
      containerStatuses: [{ name: 'w', image: 'busybox', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }],
    }));
    assert.deepEqual(await hostedJobsOf(cp, 'report'), [], 'stuck before the backup: no Job scheduled');
    const backup = await cli(['backup', 'create', '-o', 'json', '-q']);
    assert.equal(backup.code, 0, backup.stderr);
    const record = json(backup);
    await hosted(cp, 'POST', '/api/v1/namespaces/tenant-a/configmaps', { metadata: { name: 'after-backup' }, data: { lost: 'yes' } });
    const revBefore = await maxRevision(await memberIPs(cp));
    await loseMembers(cp, ['etcd-0', 'etcd-2']);

    const runStart = Date.now();
    const run = await cli(['quorum', '--yes', '--snapshot', record.name, '-o', 'json', '--timeout', '300']);
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.equal(report.restorePoint.kind, 'backup');
    // After the restore, as the seeds do by hand: the stuck CronJob repaired, the stuck pod deleted
    // (--yes), the controller-manager restarted; each a journaled step.
    const steps = new Map<string, any>(report.afterRestore.steps.map((x: { step: string }) => [x.step, x]));
    assert.deepEqual(report.afterRestore.leftUndone, [], `${JSON.stringify(report.afterRestore.steps)}\n${run.stderr.split('\n').slice(-40).join('\n')}`);
    assert.deepEqual(steps.get('repair-cronjobs').actions, [
      { kind: 'repair-cronjob', namespace: 'tenant-a', name: 'report', dropActive: [], clearLastSchedule: future, why: `status.lastScheduleTime ${future} is in the future`, done: 'repaired' },
    ]);
    assert.deepEqual(steps.get('stuck-pods').actions.map((a: any) => [a.namespace, a.name, a.state, a.node, a.done]), [['tenant-a', 'stuck-worker', 'ContainerCreating', 'node-lost', 'deleted']]);
    assert.equal(steps.get(`rollout:${NS}/${KCM}`).status, 'done');
    const journal = JSON.parse((await bucket(store).read(layout.recoveryJournal('etcd', report.id)))!.body.toString());
    assert.deepEqual(journal.steps.slice(-3).map((x: { id: string; state: string }) => `${x.id} ${x.state}`), ['repair-cronjobs done', 'stuck-pods done', `rollout:${NS}/${KCM} done`]);
    const kcm = await cp.kubeConfig().makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace: NS, name: KCM });
    assert.equal(kcm.spec?.template.metadata?.annotations?.['etcd-recover.io/restarted-by'], report.id, 'the hosted controller-manager was rolled out');
    const pod = await hosted(cp, 'GET', '/api/v1/namespaces/tenant-a/pods/stuck-worker').catch((e: Error) => e);
    assert.ok(pod instanceof Error ? / 404 /.test(pod.message) : Boolean(pod.metadata.deletionTimestamp), 'the stuck pod is deleted (its node is gone: it stays Terminating)');
    // The hosted controller-manager's CronJob controller schedules it again: a new Job, a lastScheduleTime in the past.
    const scheduled = await waitFor('the repaired CronJob scheduled again', async () => {
      const jobs = (await hostedJobsOf(cp, 'report').catch(() => [])).filter((j) => Date.parse(j.created) >= runStart);
      return jobs.length ? jobs : undefined;
    }, 300_000, 2_000);
    assert.ok(scheduled.length >= 1);
    const cronAfter = await hosted(cp, 'GET', '/apis/batch/v1/namespaces/tenant-a/cronjobs/report');
    const last = Date.parse(cronAfter.status.lastScheduleTime);
    assert.ok(last <= Date.now() && last >= runStart - 60_000, `lastScheduleTime ${cronAfter.status.lastScheduleTime} is now, not ${future}`);
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

  it('a hosted API server unreachable after the restore: the recovery completes; the report lists what was left undone and what to check by hand', async () => {
    await waitReady(cp);
    const ips = await memberIPs(cp);
    await writeKeys(ips, 'unreachable/', 50);
    const revBefore = await maxRevision(ips);
    await loseMembers(cp, ['etcd-0', 'etcd-1']);
    door.setDown(true);
    let run: CliResult;
    try {
      run = await cli(['quorum', '--yes', '-o', 'json', '--timeout', '300', '--hosted-timeout', '20']);
    } finally {
      door.setDown(false);
    }
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    assert.deepEqual(report.afterRestore.leftUndone, ['repair-cronjobs', 'stuck-pods']);
    for (const id of ['repair-cronjobs', 'stuck-pods']) {
      const st = report.afterRestore.steps.find((x: { step: string }) => x.step === id);
      assert.equal(st.status, 'left-undone');
      assert.match(st.reason, /^the hosted API server https:\/\/127\.0\.0\.1:\d+ did not answer within 20 s of the dependents coming back: /);
    }
    assert.ok(report.afterRestore.manual.some((m: string) => m.startsWith('kubectl get cronjobs -A')), report.afterRestore.manual.join('\n'));
    assert.ok(report.afterRestore.manual.some((m: string) => /ContainerCreating\|Init:/.test(m)));
    assert.equal(report.afterRestore.steps.find((x: { step: string }) => x.step === `rollout:${NS}/${KCM}`).status, 'done', 'the management side was still done');
    assert.match(run.stderr, /warning: repair-cronjobs left undone: the hosted API server/);
    const journal = JSON.parse((await bucket(store).read(layout.recoveryJournal('etcd', report.id)))!.body.toString());
    assert.equal(journal.status, 'completed');
    assert.ok(journal.steps.every((x: { state: string }) => x.state === 'done'));
    assert.match(journal.steps.find((x: { id: string }) => x.id === 'repair-cronjobs').note, /^left undone: /);
    await assertRestored(cp, 'unreachable/', 50, revBefore);
    await assertResumed(cp);
  });

  it('killed after each step in turn, every rerun resumes; the last completes with nothing lost', async () => {
    await waitReady(cp);
    // The owner's own choice survives crashes too: one CronJob suspended before the recovery.
    await setSuspend(cp, 'etcd-verify', true);
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
        assert.deepEqual(await cronSuspends(cp), { 'etcd-backup': true, 'etcd-verify': true, 'etcd-heal': true }, 'the CronJobs suspended');
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
    // A crash while they were suspended did not leave them so: each is back as it was.
    assert.deepEqual(await cronSuspends(cp), { 'etcd-backup': false, 'etcd-verify': true, 'etcd-heal': false });
    await assertCronJobsClean(cp);
    const journal = await journalOf(recoveryId!);
    assert.deepEqual(journal.facts['cronJobsSuspendBefore'], { 'etcd-backup': false, 'etcd-verify': true, 'etcd-heal': false }, 'their prior state is in the journal');
    await setSuspend(cp, 'etcd-verify', false);
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

  it('two `member replace` runs at once: one replaces, the other is refused LOCKED (exit 7); killed mid-way, the rerun resumes its journal', async () => {
    await waitReady(cp);
    const ips = await memberIPs(cp);
    await writeKeys(ips, 'mr/', 100);
    const [a, b] = await Promise.all([
      cli(['member', 'replace', 'etcd-2', '--yes', '-o', 'json']),
      cli(['member', 'replace', 'etcd-2', '--yes', '-o', 'json']),
    ]);
    const codes = [a.code, b.code].sort();
    assert.deepEqual(codes, [0, 7], `exit codes ${a.code}/${b.code}:\n--- a:\n${a.stderr}\n--- b:\n${b.stderr}`);
    const [won, lost] = a.code === 0 ? [a, b] : [b, a];
    assert.match(lost.stderr, /another recovery of cluster etcd is running: member-replace rec-/);
    const report = json(won);
    assert.equal(report.kind, 'member-replace');
    const journal = JSON.parse((await bucket(store).read(layout.recoveryJournal('etcd', report.id)))!.body.toString());
    assert.equal(journal.status, 'completed');
    assert.deepEqual(journal.steps.map((s: { id: string }) => s.id), ['remove-member', 'add-learner', 'start-member', 'promote', 'wait-healthy']);
    assert.ok(journal.steps.every((s: { state: string }) => s.state === 'done'));
    await assertMemberBack(cp, 'etcd-2', 'mr/', 100);
    assert.equal(await bucket(store).read(layout.lock('etcd')), undefined, 'the lock is released');

    // Killed right after re-adding etcd-1 as a learner: the journal stays open; the same command resumes it.
    const crashed = await cli(['member', 'replace', 'etcd-1', '--yes'], { ETCD_RECOVER_FAULT_AFTER_STEP: 'add-learner' });
    assert.equal(crashed.code, 10, crashed.stderr);
    assert.match(crashed.stderr, /rerun the same command: it resumes recovery rec-/);
    const open = await Journal.findOpen(bucket(store), 'etcd');
    assert.ok(open, 'the killed run left an open journal');
    assert.equal(open!.doc.plan.kind, 'member-replace');
    assert.equal(open!.doc.plan.member, 'etcd-1');
    assert.equal(open!.step('remove-member').state, 'done');
    assert.notEqual(open!.step('add-learner').state, 'done');
    const resumed = await cli(['member', 'replace', 'etcd-1', '--yes', '-o', 'json']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming the unfinished member-replace recovery/);
    const r2 = json(resumed);
    assert.equal(r2.id, open!.id);
    assert.equal(r2.resumed, true);
    await assertMemberBack(cp, 'etcd-1', 'mr/', 100);
  });
});

// ------------------------------------------------------------------ helpers

/** Where a PVC lives on the node (the harness provisions hostPath PVs). */
async function hostPathOf(cp: ControlPlane, pvcName: string): Promise<string> {
  const core = cp.kubeConfig().makeApiClient(CoreV1Api);
  const pvc = await waitFor(`PVC ${pvcName} bound`, async () => {
    const p = await core.readNamespacedPersistentVolumeClaim({ namespace: NS, name: pvcName }).catch(() => undefined);
    return p?.spec?.volumeName && p.status?.phase === 'Bound' && !p.metadata?.deletionTimestamp ? p : undefined;
  }, 120_000, 500);
  const pv = await core.readPersistentVolume({ name: pvc.spec!.volumeName! });
  return pv.spec!.hostPath!.path;
}

const CRONS = ['etcd-backup', 'etcd-verify', 'etcd-heal'];

async function cronSuspends(cp: ControlPlane): Promise<Record<string, boolean>> {
  const batch = cp.kubeConfig().makeApiClient(BatchV1Api);
  const out: Record<string, boolean> = {};
  for (const n of CRONS) out[n] = (await batch.readNamespacedCronJob({ namespace: NS, name: n })).spec?.suspend === true;
  return out;
}

async function setSuspend(cp: ControlPlane, name: string, suspend: boolean): Promise<void> {
  const batch = cp.kubeConfig().makeApiClient(BatchV1Api);
  const cj = await batch.readNamespacedCronJob({ namespace: NS, name });
  cj.spec!.suspend = suspend;
  await batch.replaceNamespacedCronJob({ namespace: NS, name, body: cj });
}

/** No recovery annotation left on any CronJob. */
async function assertCronJobsClean(cp: ControlPlane): Promise<void> {
  const batch = cp.kubeConfig().makeApiClient(BatchV1Api);
  for (const n of CRONS) {
    const cj = await batch.readNamespacedCronJob({ namespace: NS, name: n });
    assert.equal(cj.metadata?.annotations?.['etcd-recover.io/suspend-before'], undefined, n);
  }
}

/** A Job of the auto-heal CronJob (as the schedule would start it), checks 1 s apart; its outcome and log. */
async function runHealJob(cp: ControlPlane, name: string): Promise<{ succeeded: boolean; log: string }> {
  const batch = cp.kubeConfig().makeApiClient(BatchV1Api);
  const cron = await batch.readNamespacedCronJob({ namespace: NS, name: 'etcd-heal' });
  const spec = cron.spec!.jobTemplate.spec!;
  spec.template.spec!.containers[0]!.args = ['agent', 'heal', '--checks', '1', '--interval', '1'];
  spec.backoffLimit = 0;
  await batch.createNamespacedJob({ namespace: NS, body: { metadata: { name, namespace: NS }, spec } });
  const { succeeded, diagnostics } = await cp.waitForJob(NS, name);
  const pods = await cp.kubeConfig().makeApiClient(CoreV1Api).listNamespacedPod({ namespace: NS, labelSelector: `job-name=${name}` });
  const log = pods.items.map((p) => cp.logsOf(NS, p.metadata!.name!)).join('\n');
  return { succeeded, log: `${log}\n${succeeded ? '' : diagnostics}` };
}

/** The member is a voting member again and serves every key (asked alone). */
async function assertMemberBack(cp: ControlPlane, member: string, prefix: string, n: number): Promise<void> {
  await waitFor(`${member} back with every key`, async () => {
    const ip = await cp.podIP(NS, member).catch(() => undefined);
    if (!ip) return false;
    const one = new Etcd3({ hosts: [`http://${ip}:2379`] });
    try {
      const list = await one.cluster.memberList({});
      const me = list.members.find((m) => m.name === member);
      return Boolean(me && !me.isLearner) && list.members.length === 3 && (await one.getAll().prefix(prefix).serializable(true).count()) === n;
    } catch {
      return false;
    } finally {
      one.close();
    }
  }, 240_000, 1_000);
}

function bucket(store: Sandbox): S3ObjectStore {
  return new S3ObjectStore(store.s3Config());
}

/** The hosted control plane: a kube-apiserver whose only storage is the etcd above, and the object the contract pauses. */
function hostedControlPlane(): Record<string, any>[] {
  const labels = { app: 'kube-apiserver' };
  const kcmLabels = { app: KCM };
  return [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'hosted-cluster', namespace: NS }, data: { description: 'stands in for a HostedCluster: the contract pauses it' } },
    // In-cluster clients reach the hosted API server through its Service (the harness resolves it to the ready pod).
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'kube-apiserver', namespace: NS }, spec: { selector: labels, ports: [{ name: 'https', port: 6443, targetPort: 6443 }] } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'hosted-kcm-kubeconfig', namespace: NS }, stringData: { kubeconfig: hostedKubeconfig(`https://kube-apiserver.${NS}.svc:6443`, HOSTED_TOKEN) } },
    {
      // The hosted cluster's CronJob and Job controllers; not a dependent: it stays up through the
      // restore (its caches then predate it), and the contract rolls it out afterwards.
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: KCM, namespace: NS, labels: kcmLabels },
      spec: {
        replicas: 1,
        selector: { matchLabels: kcmLabels },
        template: {
          metadata: { labels: kcmLabels },
          spec: {
            containers: [
              {
                name: KCM,
                image: `registry.k8s.io/kube-controller-manager:${KUBE_VERSION}`,
                command: ['kube-controller-manager'],
                args: ['--kubeconfig=/etc/hosted-kcm/kubeconfig', '--controllers=cronjob-controller,job-controller', '--leader-elect=false', '--secure-port=0', '--v=2'],
                volumeMounts: [{ name: 'kubeconfig', mountPath: '/etc/hosted-kcm', readOnly: true }],
              },
            ],
            volumes: [{ name: 'kubeconfig', secret: { secretName: 'hosted-kcm-kubeconfig' } }],
          },
        },
      },
    },
    // The hosted API server, without an encryption configuration (companions.test.ts restores one).
    ...hostedApiserverManifests({ namespace: NS, members: MEMBERS, token: HOSTED_TOKEN, encryptSecrets: false }),
  ];
}

/** A request to the hosted kube-apiserver (static admin token) at its pod's address. */
function hosted(cp: ControlPlane, method: string, path: string, body?: unknown): Promise<any> {
  return hostedRequest(cp, NS, HOSTED_TOKEN, method, path, body);
}

/** Rewrites an object's status through its status subresource (read, change, replace; again on a conflict). */
async function hostedStatus(cp: ControlPlane, path: string, change: (status: any) => any): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const o = await hosted(cp, 'GET', path);
    o.status = change(o.status ?? {});
    try {
      await hosted(cp, 'PUT', `${path}/status`, o);
      return;
    } catch (e) {
      if (attempt > 3 || !/: 409 /.test((e as Error).message)) throw e;
    }
  }
}

/** The hosted cluster's Jobs of a CronJob (tenant-a), with their creation times. */
async function hostedJobsOf(cp: ControlPlane, cronJob: string): Promise<{ name: string; created: string }[]> {
  const list = await hosted(cp, 'GET', '/apis/batch/v1/namespaces/tenant-a/jobs');
  return list.items
    .filter((j: any) => (j.metadata.ownerReferences ?? []).some((r: any) => r.kind === 'CronJob' && r.name === cronJob))
    .map((j: any) => ({ name: j.metadata.name, created: j.metadata.creationTimestamp }));
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

/** The members' pod IPs. */
const memberIPs = (cp: ControlPlane) => memberIPsOf(cp, NS, MEMBERS);

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
const loseMembers = (cp: ControlPlane, members: string[]) => loseMembersOf(cp, NS, members);

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
