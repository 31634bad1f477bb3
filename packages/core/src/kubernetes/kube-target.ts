import { restoreCompanions, type CompanionBundle, type CompanionOutcome } from '../snapshot/companions.js';
import { kubeCompanionSink } from './companions.js';
import { BatchV1Api, CoreV1Api, KubeConfig, type V1Pod, type V1StatefulSet } from '@kubernetes/client-node';
import { EtcdRecoverError } from '../errors.js';
import type { EtcdGateway, MemberStatus } from '../etcd/etcd-gateway.js';
import type { RecoveryContract } from '../contract/recovery-contract.js';
import { asidePath, volumeStepKey } from '../recovery/member-data.js';
import { keyspaceReportKey } from '../recovery/keyspace.js';
import { summarize, type ClusterObservation, type MemberObservation, type MemberSpec } from '../recovery/observation.js';
import type { AfterRestoreSpec, Keyspace, RecoveryTarget, RestoreParams, StepContext, TargetEtcdVersion } from '../recovery/target.js';
import type { HostedCluster } from '../recovery/ports.js';
import { hostedClusterFromSecret } from './hosted-cluster.js';
import { etcdVersionFromImage } from '../recovery/version-check.js';
import type { SnapshotRecord } from '../snapshot/catalog.js';
import { readJson } from '../store/object-store.js';
import { layout } from '../layout.js';
import { refuseUnlessRoom, restoreSpaceNeed, type VolumeSpace } from '../recovery/space.js';
import { ComponentCronJobs, CRONJOBS_FACT } from './component-cronjobs.js';
import { RECOVERY_LABEL, apiError, kubeMemberStatus, pollDelay, statusOf, type Permission } from './kube-cluster.js';
import { quorumPermissions } from './quorum-permissions.js';
import { RecoveryJobs } from './recovery-jobs.js';
import { REPLICAS_ANNOTATION, Workloads, holdsPatch, type ObjectRef } from './workloads.js';

/** Pod-template annotations a forced rollout writes (as `kubectl rollout restart` writes kubectl.kubernetes.io/restartedAt). */
export const RESTARTED_AT_ANNOTATION = 'etcd-recover.io/restartedAt';
export const RESTARTED_BY_ANNOTATION = 'etcd-recover.io/restarted-by';

export { RECOVERY_LABEL, REPLICAS_ANNOTATION };

/** Where a space-check Job reports the free bytes of one member's volume. */
export function volumeSpaceKey(cluster: string, recoveryId: string, member: string): string {
  return layout.recoveryWork(cluster, recoveryId, `${member}.space`);
}

export interface KubeTargetTimeouts {
  /** Pods to terminate after a scale to zero. Default 300 s. */
  stopMs?: number;
  /** One recovery Job (verify, snapshot, set-aside, restore, keyspace). Default 900 s. */
  jobMs?: number;
}

/**
 * A declared cluster on Kubernetes as a recovery target. The operator's machine talks only to the
 * API server: workloads are paused and scaled through it, etcd's health is read from each pod's
 * metrics port through the API server's pod proxy, and everything that touches etcd or its data runs
 * in the cluster as Jobs built from the component's own CronJob templates (image, bucket
 * credentials, contract): a live snapshot, verification, per-member set-aside and restore Jobs that
 * mount the member's PVC and pull the snapshot from the bucket themselves, and the final keyspace
 * check. Jobs report back through the bucket, so every step can tell whether its effect holds.
 */
export class KubernetesRecoveryTarget implements RecoveryTarget {
  readonly kind = 'kubernetes' as const;
  private readonly core: CoreV1Api;
  private readonly stopMs: number;
  private readonly workloads: Workloads;
  private readonly jobs: RecoveryJobs;
  private readonly cronJobs: ComponentCronJobs;

  constructor(
    readonly kc: KubeConfig,
    readonly contract: RecoveryContract,
    timeouts: KubeTargetTimeouts = {},
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.stopMs = timeouts.stopMs ?? 300_000;
    this.workloads = new Workloads(kc, this.stopMs);
    this.jobs = new RecoveryJobs(kc, contract, timeouts.jobMs ?? 900_000);
    const cronJob = (name: string): ObjectRef => ({ apiVersion: 'batch/v1', kind: 'CronJob', name, namespace: this.ns });
    this.cronJobs = new ComponentCronJobs(kc.makeApiClient(BatchV1Api), contract, this.stopMs, (name, patch) => this.workloads.mergePatch(cronJob(name), patch), (name) => this.jobs.delete(name));
  }

  get cluster(): string {
    return this.contract.cluster;
  }

  /** Always: besides dependents and the pause object, the component's own CronJobs are suspended. */
  get quiesces(): boolean {
    return true;
  }

  async restoreCompanions(bundle: CompanionBundle, o: { overwrite: boolean; backup: string }): Promise<CompanionOutcome[]> {
    return restoreCompanions(bundle, kubeCompanionSink(this.kc, this.ns, o.backup), { overwrite: o.overwrite });
  }

  private get ns(): string {
    return this.contract.namespace;
  }

  describe(): string {
    return `kubernetes ${this.ns}/${this.contract.etcd.statefulSet}`;
  }

  members(): MemberSpec[] {
    return this.contract.etcd.members.map((m) => ({ name: m.name, peerURL: m.peerURL, clientURL: m.clientURL }));
  }

  gateway(): EtcdGateway {
    throw new EtcdRecoverError('INTERNAL', 'on Kubernetes etcd is reached through Jobs in the cluster, not from this machine');
  }

  /** What the operator must be allowed to do for a quorum restore (checked before any change). */
  permissions(): Permission[] {
    return quorumPermissions(this.contract);
  }

  // ------------------------------------------------------------------ observation

  async observe(): Promise<ClusterObservation> {
    const statuses = await kubeMemberStatus(this.kc, this.contract);
    const leader = statuses.find((s) => s.etcd?.isLeader)?.name;
    const specs = this.members();
    const members = statuses.map((s, i): MemberObservation => {
      const spec = specs[i]!;
      const hasData = !s.pvc ? false : s.etcd ? s.etcd.revision > 0 : undefined;
      const base: MemberObservation = { ...spec, running: s.pod?.phase === 'Running', hasData };
      if (!s.etcd) return { ...base, error: s.error ?? (s.pod ? `pod ${s.pod.phase}${s.pod.reason ? ` (${s.pod.reason})` : ''}` : 'no pod') };
      const status: MemberStatus = {
        endpoint: spec.clientURL,
        memberId: spec.name,
        clusterId: '',
        leaderId: s.etcd.hasLeader ? (leader ?? 'unknown') : '0',
        isLeader: s.etcd.isLeader,
        isLearner: s.etcd.isLearner,
        revision: s.etcd.revision,
        raftIndex: s.etcd.raftIndex,
        raftAppliedIndex: s.etcd.raftIndex,
        raftTerm: 0,
        dbSize: s.etcd.dbSize,
        dbSizeInUse: s.etcd.dbSize,
        version: '',
        errors: [],
      };
      return { ...base, status };
    });
    return summarize(members);
  }

  /**
   * The etcd the restored members will run: the contract's `etcd.version` when declared; else the tag
   * of the etcd container's image in the live StatefulSet (what the scale-up starts); else the
   * contract's image tag. Undefined when none names a version (a digest, "latest"): the plan shows it
   * unknown (the live members' metrics report no version here).
   */
  async etcdVersion(): Promise<TargetEtcdVersion | undefined> {
    const c = this.contract.etcd;
    if (c.version) return { version: c.version, source: `recovery contract (etcd.version)` };
    const sts = await this.readStatefulSet().catch(() => undefined);
    const containers = sts?.spec?.template?.spec?.containers ?? [];
    const image = (containers.find((x) => x.name === c.containerName) ?? containers[0])?.image;
    const live = etcdVersionFromImage(image);
    if (live) return { version: live, source: `image ${image} of statefulset ${this.ns}/${c.statefulSet}` };
    const declared = etcdVersionFromImage(c.image);
    if (declared) return { version: declared, source: `image ${c.image} in the recovery contract` };
    return undefined;
  }

  // ------------------------------------------------------------------ restore source

  async captureLive(member: string, labels: Record<string, string>, ctx: StepContext): Promise<string> {
    const found = async () => (await ctx.catalog.list(ctx.signal)).snapshots.find((s) => s.labels?.['recovery'] === ctx.recoveryId && s.labels?.['reason'] === labels['reason']);
    const earlier = await found();
    if (earlier) return earlier.name;
    const spec = this.members().find((m) => m.name === member)!;
    const args = ['backup', 'create', '--quiet', '--member', spec.clientURL, '--allow-no-leader', ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])];
    // One Job name per purpose: the backup after the restore must not find the pre-restore snapshot's Job done.
    await this.jobs.run(ctx.recoveryId, labels['reason'] === 'post-recovery' ? `backup-after-${member}` : `snapshot-${member}`, args, ctx);
    const rec = await found();
    if (!rec) throw new EtcdRecoverError('INTERNAL', `the snapshot job for ${member} succeeded but no backup labelled recovery=${ctx.recoveryId} is in the bucket`);
    return rec.name;
  }

  /**
   * The point-in-time rebuild as a Job in the cluster (the agent image has etcd and etcdutl; its
   * temporary etcd lives in the pod's emptyDir): nothing crosses this machine.
   */
  async buildPointInTime(point: { chain: string; revision: number }, labels: Record<string, string>, ctx: StepContext): Promise<string> {
    const found = async () => (await ctx.catalog.list(ctx.signal)).snapshots.find((s) => s.labels?.['recovery'] === ctx.recoveryId && s.labels?.['reason'] === 'point-in-time');
    const earlier = await found();
    if (earlier) return earlier.name;
    const args = ['agent', 'build-point', '--quiet', '--chain', point.chain, '--to-revision', String(point.revision), ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])];
    await this.jobs.run(ctx.recoveryId, 'point-in-time', args, ctx, (spec) => {
      const pod = spec.template.spec!;
      const c = pod.containers[0]!;
      pod.volumes = [...(pod.volumes ?? []), { name: 'replay', emptyDir: {} }];
      c.volumeMounts = [...(c.volumeMounts ?? []), { name: 'replay', mountPath: '/var/tmp/replay' }];
      c.env = [...(c.env ?? []).filter((e) => e.name !== 'TMPDIR'), { name: 'TMPDIR', value: '/var/tmp/replay' }];
    });
    const rec = await found();
    if (!rec) throw new EtcdRecoverError('INTERNAL', `the point-in-time job succeeded but no backup labelled recovery=${ctx.recoveryId} is in the bucket`);
    return rec.name;
  }

  private verifiedKey(recoveryId: string): string {
    return layout.recoveryWork(this.cluster, recoveryId, 'restore-point.verified');
  }

  async isStaged(record: SnapshotRecord, ctx: StepContext): Promise<boolean> {
    const v = await readJson<{ name: string; sha256: string }>(ctx.catalog.store, this.verifiedKey(ctx.recoveryId), ctx.signal);
    return v?.value.name === record.name && v.value.sha256 === record.sha256;
  }

  /** Verifies the restore point in the cluster (a Job reads it from the bucket); no data crosses this machine. */
  async stageSnapshot(record: SnapshotRecord, ctx: StepContext): Promise<void> {
    await this.jobs.run(ctx.recoveryId, 'verify', ['backup', 'verify', record.name, '--quiet'], ctx);
    const rec = await ctx.catalog.get(record.name, ctx.signal);
    if (!rec.verification?.ok || rec.verification.sha256 !== record.sha256) {
      throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `restore point ${record.name} did not verify in the cluster`, { hint: 'nothing was changed; choose another backup with --snapshot' });
    }
    await ctx.catalog.store.put(this.verifiedKey(ctx.recoveryId), JSON.stringify({ name: record.name, sha256: record.sha256, at: new Date().toISOString() }), { contentType: 'application/json' });
    ctx.progress(`verified ${record.name} in the cluster: revision ${rec.verification.revision}, ${rec.verification.totalKeys} keys`);
  }

  // ------------------------------------------------------------------ workloads

  private async readStatefulSet(): Promise<V1StatefulSet> {
    return (await this.workloads.read(this.statefulSetRef())) as V1StatefulSet;
  }

  private statefulSetRef(): ObjectRef {
    return { apiVersion: 'apps/v1', kind: 'StatefulSet', name: this.contract.etcd.statefulSet, namespace: this.ns };
  }

  private pauseTarget(): ObjectRef {
    const p = this.contract.pause!;
    return { apiVersion: p.apiVersion, kind: p.kind, name: p.name, namespace: p.namespace ?? this.ns };
  }

  async quiesce(ctx: StepContext): Promise<void> {
    // First the component's own CronJobs: no backup, prune, verification, heal or defrag starts
    // while etcd is being restored.
    await this.cronJobs.suspend(ctx);
    if (this.contract.pause) {
      const p = this.pauseTarget();
      await this.workloads.mergePatch(p, this.contract.pause.pausePatch);
      ctx.progress(`paused reconciliation of ${p.kind} ${p.namespace}/${p.name}`);
    }
    const scaled = [];
    for (const d of this.contract.dependents) {
      scaled.push({ d, o: await this.workloads.scaleDown(d) });
      ctx.progress(`scaled ${d.kind} ${d.namespace}/${d.name} to 0`);
    }
    for (const { d, o } of scaled) await this.workloads.waitNoPods(`${d.kind} ${d.namespace}/${d.name}`, o, d.namespace, ctx);
    await this.cronJobs.drainRuns(ctx);
  }

  async isQuiesced(ctx?: StepContext): Promise<boolean> {
    const seen = await this.cronJobs.suspendedBefore();
    if (!seen || (await this.cronJobs.runs()).length) return false;
    if (this.contract.pause) {
      const p = this.pauseTarget();
      if (!holdsPatch(await this.workloads.read(p), this.contract.pause.pausePatch)) return false;
    }
    for (const d of this.contract.dependents) {
      const o = await this.workloads.read(d);
      if (o.spec?.replicas !== 0 || (await this.workloads.podsOf(o, d.namespace)).length) return false;
    }
    // Quiesced by a run that died before its journal said so: the journal learns the CronJobs' prior
    // state from their annotations.
    if (ctx && !ctx.facts[CRONJOBS_FACT]) ctx.facts[CRONJOBS_FACT] = seen;
    return true;
  }

  async resume(ctx: StepContext): Promise<void> {
    for (const d of this.contract.dependents) {
      const n = await this.workloads.scaleUp(d, d.replicas);
      ctx.progress(`scaled ${d.kind} ${d.namespace}/${d.name} back to ${n}`);
    }
    if (this.contract.pause) {
      const p = this.pauseTarget();
      await this.workloads.mergePatch(p, this.contract.pause.resumePatch);
      ctx.progress(`resumed reconciliation of ${p.kind} ${p.namespace}/${p.name}`);
    }
    await this.cronJobs.restore(ctx);
  }

  async isResumed(): Promise<boolean> {
    for (const d of this.contract.dependents) {
      const o = await this.workloads.read(d);
      if (!o.spec?.replicas || o.metadata?.annotations?.[REPLICAS_ANNOTATION]) return false;
    }
    if (this.contract.pause) {
      const p = this.pauseTarget();
      if (!holdsPatch(await this.workloads.read(p), this.contract.pause.resumePatch)) return false;
    }
    return this.cronJobs.restored();
  }

  // ------------------------------------------------------------------ after the restore

  afterRestore(): AfterRestoreSpec {
    const a = this.contract.afterRestore;
    return {
      ...(a?.hostedKubeconfig ? { hostedKubeconfig: a.hostedKubeconfig } : {}),
      rollouts: (a?.rolloutDeployments ?? []).map((d) => `${this.ns}/${d}`),
      stuckPodSeconds: a?.stuckPodSeconds ?? 300,
    };
  }

  async hostedCluster(): Promise<HostedCluster> {
    const ref = this.contract.afterRestore?.hostedKubeconfig;
    if (!ref) throw new EtcdRecoverError('CONFIG', 'the recovery contract names no kubeconfig for the hosted cluster (afterRestore.hostedKubeconfig)');
    return hostedClusterFromSecret(this.kc, this.ns, ref);
  }

  private splitDeployment(d: string): { namespace: string; name: string } {
    const [namespace, name] = d.includes('/') ? d.split('/') as [string, string] : [this.ns, d];
    return { namespace, name };
  }

  async isRolledOut(d: string, ctx: StepContext): Promise<boolean> {
    const { namespace, name } = this.splitDeployment(d);
    const o = await this.workloads.read({ apiVersion: 'apps/v1', kind: 'Deployment', name, namespace });
    return o.spec?.template?.metadata?.annotations?.[RESTARTED_BY_ANNOTATION] === ctx.recoveryId;
  }

  /** What `kubectl rollout restart` does: a new pod-template annotation, so every pod is replaced. */
  async rollout(d: string, ctx: StepContext): Promise<void> {
    const { namespace, name } = this.splitDeployment(d);
    await this.workloads.mergePatch({ apiVersion: 'apps/v1', kind: 'Deployment', name, namespace }, {
      metadata: { name, namespace },
      spec: { template: { metadata: { annotations: { [RESTARTED_AT_ANNOTATION]: new Date().toISOString(), [RESTARTED_BY_ANNOTATION]: ctx.recoveryId } } } },
    });
  }

  // ------------------------------------------------------------------ space

  /**
   * A Job per member's PVC (mounted where etcd mounts it) reports its free bytes to the bucket. The
   * restore keeps the old data, the downloaded snapshot and the restored data in one volume: it needs
   * the snapshot + the restored DB + a WAL segment free beside what is there. A PVC that is gone or
   * being deleted is recreated empty by the restore and is not measured.
   */
  async checkSpace(names: string[], record: SnapshotRecord, ctx: StepContext): Promise<void> {
    const need = restoreSpaceNeed(record, { snapshotInVolume: true });
    const measured = await Promise.all(
      names.map(async (name): Promise<VolumeSpace | undefined> => {
        const m = this.contract.etcd.members.find((x) => x.name === name)!;
        let pvc;
        try {
          pvc = await this.core.readNamespacedPersistentVolumeClaim({ namespace: this.ns, name: m.pvc });
        } catch (e) {
          if (statusOf(e) !== 404) throw apiError(`get persistentvolumeclaim ${this.ns}/${m.pvc}`, e);
        }
        if (!pvc || pvc.metadata?.deletionTimestamp) {
          ctx.progress(`${name}: PVC ${this.ns}/${m.pvc} is ${pvc ? 'being deleted' : 'gone'}; the restore recreates it empty from the claim template`);
          return undefined;
        }
        const key = volumeSpaceKey(this.cluster, ctx.recoveryId, name);
        await ctx.catalog.store.delete(key, ctx.signal).catch(() => undefined);
        const mutate = this.jobs.volumeMutation(name, await this.readStatefulSet());
        // Beside the member's pod: a ReadWriteOnce volume in use attaches only on its node.
        const pod = await this.core.readNamespacedPod({ namespace: this.ns, name }).catch(() => undefined);
        const nodeName = pod && !pod.metadata?.deletionTimestamp ? pod.spec?.nodeName : undefined;
        const args = ['agent', 'statfs', '--path', this.contract.etcd.mountPath, '--recovery-id', ctx.recoveryId, '--member', name, '--quiet'];
        await this.jobs.run(ctx.recoveryId, `space-${name}-${Date.now().toString(36)}`, args, ctx, (spec) => {
          mutate(spec);
          if (nodeName) spec.template.spec!.nodeName = nodeName;
        }, { removeWhenDone: true });
        const got = await readJson<{ freeBytes: number }>(ctx.catalog.store, key, ctx.signal);
        if (!got) throw new EtcdRecoverError('INTERNAL', `the space check job for ${name} succeeded but wrote no ${key}`);
        return { volume: `PVC ${this.ns}/${m.pvc}`, members: [name], freeBytes: got.value.freeBytes, need };
      }),
    );
    refuseUnlessRoom(measured.filter((v): v is VolumeSpace => Boolean(v)), ctx.progress);
  }

  // ------------------------------------------------------------------ members

  private requireAll(names: string[]): void {
    if (names.length !== this.contract.etcd.members.length) {
      throw new EtcdRecoverError('INTERNAL', 'on Kubernetes members stop and start together (the StatefulSet scales); single members are replaced in the cluster by `member replace`');
    }
  }

  async stopMembers(names: string[], ctx: StepContext): Promise<void> {
    this.requireAll(names);
    const sts = await this.workloads.scaleDown(this.statefulSetRef());
    ctx.progress(`scaled statefulset ${this.ns}/${this.contract.etcd.statefulSet} to 0; waiting for its pods to terminate`);
    await this.workloads.waitNoPods(`statefulset ${this.ns}/${this.contract.etcd.statefulSet}`, sts, this.ns, ctx);
  }

  async areStopped(names: string[]): Promise<boolean> {
    this.requireAll(names);
    const sts = await this.readStatefulSet();
    return sts.spec?.replicas === 0 && !(await this.workloads.podsOf(sts, this.ns)).length;
  }

  async startMembers(names: string[], mode: { initialState: 'new' | 'existing' }, ctx: StepContext): Promise<void> {
    this.requireAll(names);
    if (mode.initialState !== 'new') throw new EtcdRecoverError('INTERNAL', 'joining members start through member-init on Kubernetes');
    const n = await this.workloads.scaleUp(this.statefulSetRef(), this.contract.etcd.replicas);
    ctx.progress(`scaled statefulset ${this.ns}/${this.contract.etcd.statefulSet} back to ${n}`);
  }

  async areStarted(names: string[]): Promise<boolean> {
    const sts = await this.readStatefulSet();
    if (!sts.spec?.replicas) return false;
    const pods = new Set(await this.workloads.podsOf(sts, this.ns));
    return names.every((n) => pods.has(n));
  }

  asideLocation(name: string, recoveryId: string): string {
    const m = this.contract.etcd.members.find((x) => x.name === name);
    return `PVC ${this.ns}/${m?.pvc ?? name}: ${asidePath(this.contract.etcd.dataDir, recoveryId)}`;
  }

  /** The member's PVC; recreated from the StatefulSet's claim template when it was lost. */
  private async ensurePvc(member: string, ctx: StepContext): Promise<void> {
    const m = this.contract.etcd.members.find((x) => x.name === member)!;
    const deadline = Date.now() + this.stopMs;
    for (;;) {
      let pvc;
      try {
        pvc = await this.core.readNamespacedPersistentVolumeClaim({ namespace: this.ns, name: m.pvc });
      } catch (e) {
        if (statusOf(e) !== 404) throw apiError(`get persistentvolumeclaim ${this.ns}/${m.pvc}`, e);
        break;
      }
      if (!pvc.metadata?.deletionTimestamp) return;
      // Being deleted (the protection finalizer lets go once no pod uses it): wait, then recreate.
      if (Date.now() > deadline) {
        const users = (await this.core.listNamespacedPod({ namespace: this.ns }).catch(() => ({ items: [] as V1Pod[] }))).items
          .filter((p) => p.spec?.volumes?.some((v) => v.persistentVolumeClaim?.claimName === m.pvc))
          .map((p) => `${p.metadata?.name} (${p.status?.phase}${p.metadata?.deletionTimestamp ? ', terminating' : ''})`);
        throw new EtcdRecoverError('TIMEOUT', `PVC ${this.ns}/${m.pvc} is still being deleted after ${Math.round(this.stopMs / 1000)} s${users.length ? `; pods using it: ${users.join(', ')}` : ''}`, {
          hint: `kubectl -n ${this.ns} describe pvc ${m.pvc} (a pod may still use it); rerun to resume`,
        });
      }
      await pollDelay(ctx.signal);
    }
    const sts = await this.readStatefulSet();
    const tpl = sts.spec?.volumeClaimTemplates?.find((t) => t.metadata?.name === this.contract.etcd.volumeClaimTemplate);
    if (!tpl) throw new EtcdRecoverError('CONFIG', `statefulset ${this.ns}/${sts.metadata?.name} has no volumeClaimTemplate ${this.contract.etcd.volumeClaimTemplate}`);
    try {
      await this.core.createNamespacedPersistentVolumeClaim({
        namespace: this.ns,
        body: {
          metadata: { name: m.pvc, namespace: this.ns, labels: { ...(sts.spec?.selector?.matchLabels ?? {}), ...(tpl.metadata?.labels ?? {}) } },
          spec: tpl.spec!,
        },
      });
      ctx.progress(`recreated lost PVC ${this.ns}/${m.pvc} from the StatefulSet's claim template`);
    } catch (e) {
      if (statusOf(e) !== 409) throw apiError(`create persistentvolumeclaim ${this.ns}/${m.pvc}`, e);
    }
  }

  private async stepDone(name: string, phase: 'set-aside' | 'restore', ctx: StepContext): Promise<boolean> {
    return Boolean(await readJson(ctx.catalog.store, volumeStepKey(this.cluster, ctx.recoveryId, name, phase), ctx.signal));
  }

  async isSetAside(name: string, ctx: StepContext): Promise<boolean> {
    return this.stepDone(name, 'set-aside', ctx);
  }

  async setAside(name: string, ctx: StepContext): Promise<void> {
    await this.ensurePvc(name, ctx);
    const args = ['agent', 'restore-member', '--phase', 'set-aside', '--recovery-id', ctx.recoveryId, '--member', name, '--quiet'];
    await this.jobs.run(ctx.recoveryId, `aside-${name}`, args, ctx, this.jobs.volumeMutation(name, await this.readStatefulSet()), { removeWhenDone: true });
    ctx.progress(`${name}: old data set aside at ${this.asideLocation(name, ctx.recoveryId)}`);
  }

  async isRestored(name: string, ctx: StepContext): Promise<boolean> {
    return this.stepDone(name, 'restore', ctx);
  }

  async restoreMember(name: string, record: SnapshotRecord, p: RestoreParams, ctx: StepContext): Promise<void> {
    await this.ensurePvc(name, ctx);
    const args = [
      'agent', 'restore-member', '--phase', 'restore', '--recovery-id', ctx.recoveryId, '--member', name,
      '--snapshot', record.name, '--token', p.token, '--bump', String(p.bump), '--quiet',
    ];
    await this.jobs.run(ctx.recoveryId, `restore-${name}`, args, ctx, this.jobs.volumeMutation(name, await this.readStatefulSet()), { removeWhenDone: true });
    ctx.progress(`${name}: restored ${record.name} (revision ${record.revision} + ${p.bump}) in the cluster`);
  }

  /** Key count and HashKV of every member, measured by a Job in the cluster and reported through the bucket. */
  async keyspace(ctx: StepContext, countAt?: number): Promise<Keyspace> {
    const key = keyspaceReportKey(this.cluster, ctx.recoveryId);
    await ctx.catalog.store.delete(key, ctx.signal).catch(() => undefined);
    // A new Job each time: the keyspace is measured now, not when an earlier run measured it.
    await this.jobs.run(ctx.recoveryId, `keyspace-${Date.now().toString(36)}`, ['agent', 'keyspace', '--recovery-id', ctx.recoveryId, ...(countAt !== undefined ? ['--count-at', String(countAt)] : []), '--quiet'], ctx);
    const got = await readJson<Keyspace>(ctx.catalog.store, key, ctx.signal);
    if (!got) throw new EtcdRecoverError('INTERNAL', `the keyspace job succeeded but wrote no ${key}`);
    return got.value;
  }
}
