import { strict as assert } from 'node:assert';
import { observeMembers, threeMembers } from '../../support/observations.js';
import {
  AfterRestoreSteps,
  EtcdRecoverError,
  afterRestoreReport,
  computeRevisionBump,
  cronJobRepairPatch,
  parseContract,
  planQuorumRestore,
  stuckCronJobs,
  stuckPods,
  type HostedCluster,
  type HostedCronJob,
  type HostedJob,
  type HostedPod,
  type PlanAfterRestore,
  type PlanStep,
  type RecoveryTarget,
  type StepContext,
} from '@etcd-recover/core';

const now = new Date('2026-12-02T12:00:00Z');

const cron = (name: string, o: Partial<HostedCronJob> = {}): HostedCronJob => ({ namespace: 'tenant-a', name, suspended: false, active: [], resourceVersion: '41', ...o });
const job = (name: string, uid?: string): HostedJob => ({ namespace: 'tenant-a', name, ...(uid ? { uid } : {}) });
const pod = (name: string, o: Partial<HostedPod> = {}): HostedPod => ({
  namespace: 'tenant-a', name, phase: 'Pending', nodeName: 'node-1', createdAt: '2026-12-02T11:50:00Z', deleting: false, initContainers: 0, initDone: 0, waiting: ['ContainerCreating'], ...o,
});

const unscheduled = (): HostedPod => {
  const p = pod('unscheduled');
  delete p.nodeName;
  return p;
};

describe('after the restore: stuck CronJobs and pods, as a pure function', () => {
  it('finds CronJobs whose status.active names Jobs that are gone (or another Job by that name), or whose lastScheduleTime is in the future', () => {
    const actions = stuckCronJobs(now, [
      cron('healthy', { active: [{ name: 'healthy-1', uid: 'u1' }], lastScheduleTime: '2026-12-02T11:59:00Z' }),
      cron('gone', { active: [{ name: 'gone-1', uid: 'u2' }, { name: 'gone-2', uid: 'u3' }], lastScheduleTime: '2026-12-02T11:00:00Z' }),
      cron('recreated', { active: [{ name: 'recreated-1', uid: 'old' }] }),
      cron('future', { lastScheduleTime: '2026-12-02T14:00:00Z' }),
      cron('both', { active: [{ name: 'both-9' }], lastScheduleTime: '2026-12-03T00:00:00Z' }),
      // Suspended by its owner: not ours to touch, whatever its status says.
      cron('suspended', { suspended: true, active: [{ name: 'nope' }], lastScheduleTime: '2027-01-01T00:00:00Z' }),
      cron('never-ran'),
    ], [job('healthy-1', 'u1'), job('gone-2', 'u3'), job('recreated-1', 'new')]);
    assert.deepEqual(actions, [
      { kind: 'repair-cronjob', namespace: 'tenant-a', name: 'gone', dropActive: ['gone-1'], why: 'status.active names Job gone-1 that no longer exists' },
      { kind: 'repair-cronjob', namespace: 'tenant-a', name: 'recreated', dropActive: ['recreated-1'], why: 'status.active names Job recreated-1 that no longer exists' },
      { kind: 'repair-cronjob', namespace: 'tenant-a', name: 'future', dropActive: [], clearLastSchedule: '2026-12-02T14:00:00Z', why: 'status.lastScheduleTime 2026-12-02T14:00:00Z is in the future' },
      { kind: 'repair-cronjob', namespace: 'tenant-a', name: 'both', dropActive: ['both-9'], clearLastSchedule: '2026-12-03T00:00:00Z', why: 'status.active names Job both-9 that no longer exists; status.lastScheduleTime 2026-12-03T00:00:00Z is in the future' },
    ]);
  });

  it('repairs through a status merge patch that keeps the Jobs that exist and is fenced by the resourceVersion it read', () => {
    const cj = cron('gone', { active: [{ name: 'gone-1', uid: 'u2' }, { name: 'gone-2', uid: 'u3' }], lastScheduleTime: '2026-12-02T14:00:00Z' });
    const [a] = stuckCronJobs(now, [cj], [job('gone-2', 'u3')]);
    assert.deepEqual(cronJobRepairPatch(a!, cj), { metadata: { resourceVersion: '41' }, status: { active: [{ name: 'gone-2', uid: 'u3' }], lastScheduleTime: null } });
    const [all] = stuckCronJobs(now, [cron('x', { active: [{ name: 'x-1' }] })], []);
    assert.deepEqual(cronJobRepairPatch(all!, cron('x', { active: [{ name: 'x-1' }] })), { metadata: { resourceVersion: '41' }, status: { active: null } }, 'an emptied list is removed, as the controller leaves it');
  });

  it('finds pods on a node in ContainerCreating or Init past the bound; not unscheduled, terminating, running or young ones', () => {
    const got = stuckPods(now, [
      pod('creating'),
      pod('init', { initContainers: 2, initDone: 1, waiting: ['PodInitializing'] }),
      pod('young', { createdAt: '2026-12-02T11:58:00Z' }),
      unscheduled(),
      pod('terminating', { deleting: true }),
      pod('running', { phase: 'Running', waiting: [] }),
      pod('crashloop', { waiting: ['CrashLoopBackOff'] }),
    ], 300);
    assert.deepEqual(got, [
      { kind: 'stuck-pod', namespace: 'tenant-a', name: 'creating', state: 'ContainerCreating', ageSeconds: 600, node: 'node-1' },
      { kind: 'stuck-pod', namespace: 'tenant-a', name: 'init', state: 'Init:1/2', ageSeconds: 600, node: 'node-1' },
    ]);
  });
});

describe('after the restore: the plan', () => {
  const members = threeMembers;
  const input = (afterRestore?: PlanAfterRestore) => ({
    id: 'rec-1', cluster: 'c', target: 'test', now, members, observation: observeMembers({ 'etcd-2': 500 }),
    restorePoint: { kind: 'live' as const, member: 'etcd-2', revision: 500, reason: 'survivor' },
    bump: computeRevisionBump({ snapshotRevision: 500, snapshotCreatedAt: now, now }), token: 't', quiesce: true,
    ...(afterRestore ? { afterRestore } : {}),
  });

  it('reconciles the hosted cluster after the dependents are back, then rolls out the control plane; each action a step', () => {
    const plan = planQuorumRestore(input({ hostedKubeconfig: { secretName: 'hosted-kubeconfig', key: 'kubeconfig' }, stuckPodSeconds: 300, deleteStuckPods: false, rollouts: ['hcp/kube-controller-manager'] }));
    const ids = plan.steps.map((s) => s.id);
    assert.deepEqual(ids.slice(ids.indexOf('resume')), ['resume', 'repair-cronjobs', 'stuck-pods', 'rollout:hcp/kube-controller-manager']);
    assert.ok(plan.steps.slice(ids.indexOf('resume')).every((s) => !s.destructive));
    assert.match(plan.steps.find((s) => s.id === 'stuck-pods')!.title, /^report .* for over 300 s \(deleted only with --yes\)$/);
    assert.equal(plan.afterRestore?.deleteStuckPods, false);
    const yes = planQuorumRestore(input({ hostedKubeconfig: { secretName: 'hosted-kubeconfig', key: 'kubeconfig' }, stuckPodSeconds: 60, deleteStuckPods: true, rollouts: [] }));
    assert.match(yes.steps.find((s) => s.id === 'stuck-pods')!.title, /^delete .* for over 60 s$/);
    assert.deepEqual(plan.warnings, []);
  });

  it('without a hosted kubeconfig: no hosted steps, a warning, and the report lists what to check by hand', () => {
    const spec = { stuckPodSeconds: 300, deleteStuckPods: true, rollouts: ['hcp/kube-scheduler'] };
    const plan = planQuorumRestore(input(spec));
    const ids = plan.steps.map((s) => s.id);
    assert.deepEqual(ids.slice(ids.indexOf('resume')), ['resume', 'rollout:hcp/kube-scheduler']);
    assert.deepEqual(plan.warnings, ['the recovery contract names no kubeconfig for the hosted cluster (afterRestore.hostedKubeconfig): check its CronJobs and stuck pods by hand after the restore (the report says how)']);
    const report = afterRestoreReport(plan.afterRestore, {});
    assert.deepEqual(report?.leftUndone, []);
    assert.ok(report!.manual.some((m) => /kubectl get cronjobs -A/.test(m)));
    assert.ok(report!.manual.some((m) => /ContainerCreating\|Init/.test(m)));
    // The sandbox declares nothing: no after-restore at all.
    assert.equal(planQuorumRestore(input()).afterRestore, undefined);
    assert.equal(afterRestoreReport(undefined, {}), undefined);
  });
});

/** The hosted cluster in memory, recording what was changed; `down` makes every call fail like a refused connection. */
class FakeHosted implements HostedCluster {
  patches: { ns: string; name: string; patch: Record<string, unknown> }[] = [];
  deleted: string[] = [];
  calls = 0;
  constructor(
    public cronJobs: HostedCronJob[],
    public jobs: HostedJob[],
    public pods: HostedPod[],
    public down = false,
  ) {}
  describe() {
    return 'the hosted API server https://hosted.example:6443';
  }
  private async answer<T>(v: T): Promise<T> {
    this.calls++;
    if (this.down) throw new EtcdRecoverError('KUBERNETES_ERROR', 'GET /apis/batch/v1/cronjobs on the hosted API server https://hosted.example:6443: ECONNREFUSED');
    return v;
  }
  listCronJobs() { return this.answer(this.cronJobs); }
  listJobs() { return this.answer(this.jobs); }
  listPods() { return this.answer(this.pods); }
  async patchCronJobStatus(ns: string, name: string, patch: Record<string, unknown>) { await this.answer(undefined); this.patches.push({ ns, name, patch }); }
  async deletePod(ns: string, name: string) { await this.answer(undefined); this.deleted.push(`${ns}/${name}`); }
}

describe('after the restore: the steps never fail the recovery', () => {
  const spec: PlanAfterRestore = { hostedKubeconfig: { secretName: 'hosted-kubeconfig', key: 'kubeconfig' }, stuckPodSeconds: 0, deleteStuckPods: true, rollouts: [] };
  const step = (id: 'repair-cronjobs' | 'stuck-pods'): PlanStep => ({ id, kind: id, title: id, destructive: false });
  const ctx = (): StepContext & { messages: string[] } => {
    const messages: string[] = [];
    return { recoveryId: 'rec-1', catalog: undefined as never, progress: (m) => messages.push(m), facts: {}, messages };
  };
  const targetWith = (h: HostedCluster | (() => Promise<HostedCluster>)): RecoveryTarget => ({ describe: () => 'fake', hostedCluster: typeof h === 'function' ? h : async () => h }) as unknown as RecoveryTarget;

  it('repairs the stuck CronJobs and deletes the stuck pods, recording each action in the journal facts', async () => {
    const h = new FakeHosted([cron('report', { lastScheduleTime: '2099-01-01T00:00:00Z' })], [], [pod('stuck', { createdAt: new Date(Date.now() - 10_000).toISOString() })]);
    const steps = new AfterRestoreSteps(spec, targetWith(h), 5_000);
    const c = ctx();
    assert.equal(await steps.run(step('repair-cronjobs'), c), '1 found');
    assert.equal(await steps.run(step('stuck-pods'), c), '1 found');
    assert.deepEqual(h.patches, [{ ns: 'tenant-a', name: 'report', patch: { metadata: { resourceVersion: '41' }, status: { lastScheduleTime: null } } }]);
    assert.deepEqual(h.deleted, ['tenant-a/stuck']);
    const report = afterRestoreReport(spec, c.facts)!;
    assert.deepEqual(report.leftUndone, []);
    assert.deepEqual(report.manual, []);
    assert.deepEqual(report.steps.map((s) => [s.step, s.status, s.actions.map((a) => `${a.kind} ${a.name} ${a.done}`)]), [
      ['repair-cronjobs', 'done', ['repair-cronjob report repaired']],
      ['stuck-pods', 'done', ['stuck-pod stuck deleted']],
    ]);
  });

  it('without --yes stuck pods are only reported', async () => {
    const h = new FakeHosted([], [], [pod('stuck', { createdAt: new Date(Date.now() - 10_000).toISOString() })]);
    const c = ctx();
    await new AfterRestoreSteps({ ...spec, deleteStuckPods: false }, targetWith(h), 5_000).run(step('stuck-pods'), c);
    assert.deepEqual(h.deleted, []);
    assert.equal(afterRestoreReport(spec, c.facts)!.steps[0]!.actions[0]!.done, 'reported');
    assert.ok(c.messages.some((m) => m.includes('kubectl -n tenant-a delete pod stuck')));
  });

  it('a hosted API server that does not answer: waited for once per run, then each step is left undone with what to check by hand', async () => {
    const h = new FakeHosted([], [], [], true);
    const steps = new AfterRestoreSteps(spec, targetWith(h), 1_500);
    const c = ctx();
    const t0 = Date.now();
    const note = await steps.run(step('repair-cronjobs'), c);
    assert.match(note, /^left undone: the hosted API server https:\/\/hosted\.example:6443 did not answer within 2 s of the dependents coming back: .*ECONNREFUSED/);
    assert.ok(h.calls >= 2, 'retried while the wait lasted');
    const calls = h.calls;
    assert.match(await steps.run(step('stuck-pods'), c), /^left undone:/);
    assert.equal(h.calls, calls + 1, 'the second step does not wait again');
    assert.ok(Date.now() - t0 < 5_000);
    const report = afterRestoreReport(spec, c.facts)!;
    assert.deepEqual(report.leftUndone, ['repair-cronjobs', 'stuck-pods']);
    assert.ok(report.manual.some((m) => /kubectl get cronjobs -A/.test(m)));
    assert.ok(report.manual.some((m) => /ContainerCreating/.test(m)));
    assert.ok(c.messages.some((m) => /^warning: repair-cronjobs left undone/.test(m)));
  });

  it('a missing kubeconfig Secret or a forbidden answer is left undone at once; an interruption still stops the run', async () => {
    const c = ctx();
    const missing = targetWith(async () => {
      throw new EtcdRecoverError('PRECONDITION', 'Secret hcp/hosted-kubeconfig (afterRestore.hostedKubeconfig) does not exist');
    });
    assert.equal(await new AfterRestoreSteps(spec, missing, 60_000).run(step('repair-cronjobs'), c), 'left undone: Secret hcp/hosted-kubeconfig (afterRestore.hostedKubeconfig) does not exist');
    const forbidden = new FakeHosted([], [], []);
    forbidden.listCronJobs = async () => {
      forbidden.calls++;
      throw new EtcdRecoverError('FORBIDDEN', 'GET /apis/batch/v1/cronjobs: 403 forbidden');
    };
    const t0 = Date.now();
    assert.match(await new AfterRestoreSteps(spec, targetWith(forbidden), 60_000).run(step('repair-cronjobs'), c), /^left undone: GET \/apis\/batch\/v1\/cronjobs: 403/);
    assert.equal(forbidden.calls, 1);
    assert.ok(Date.now() - t0 < 1_000);
    const aborted = targetWith(async () => {
      throw new EtcdRecoverError('ABORTED', 'interrupted');
    });
    await assert.rejects(new AfterRestoreSteps(spec, aborted, 60_000).run(step('repair-cronjobs'), c), /interrupted/);
  });
});

describe('after the restore: the recovery contract', () => {
  const base = {
    apiVersion: 'etcd-recover.io/v1', kind: 'RecoveryContract', cluster: 'etcd', namespace: 'hcp',
    etcd: { statefulSet: 'etcd', members: [{ name: 'etcd-0' }] }, backup: { bucket: 'b' }, agent: { image: 'a' },
  };
  it('defaults the kubeconfig key and the stuck-pod bound; names a bad field', () => {
    const c = parseContract(JSON.stringify({ ...base, afterRestore: { hostedKubeconfig: { secretName: 'hosted-kubeconfig' }, rolloutDeployments: ['kube-controller-manager'] } }), 'test');
    assert.deepEqual(c.afterRestore, { hostedKubeconfig: { secretName: 'hosted-kubeconfig', key: 'kubeconfig' }, rolloutDeployments: ['kube-controller-manager'], stuckPodSeconds: 300 });
    assert.equal(parseContract(JSON.stringify(base), 'test').afterRestore, undefined);
    assert.throws(() => parseContract(JSON.stringify({ ...base, afterRestore: { rolloutDeployments: ['Not A Name'] } }), 'test'), /afterRestore\.rolloutDeployments/);
    assert.throws(() => parseContract(JSON.stringify({ ...base, afterRestore: { stuckPodSeconds: -1 } }), 'test'), /afterRestore\.stuckPodSeconds/);
  });
});
