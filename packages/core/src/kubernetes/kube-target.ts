import { restoreCompanions, type CompanionBundle, type CompanionOutcome } from '../snapshot/companions.js';
import { kubeCompanionSink } from './companions.js';
import { BatchV1Api, CoreV1Api, KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject, type V1Job, type V1Pod, type V1StatefulSet } from '@kubernetes/client-node';
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
import { RECOVERY_LABEL, apiError, awaitJob, jobOutcome, componentCronJobs, jobFailed, jobSpecFromCronJob, kubeMemberStatus, pollDelay, recoveryJobName, statusOf, type Permission } from './kube-cluster.js';

/** Pod-template annotations a forced rollout writes (as `kubectl rollout restart` writes kubectl.kubernetes.io/restartedAt). */
export const RESTARTED_AT_ANNOTATION = 'etcd-recover.io/restartedAt';
export const RESTARTED_BY_ANNOTATION = 'etcd-recover.io/restarted-by';

/** Annotation remembering a workload's replicas while a recovery holds it at zero. */
export const REPLICAS_ANNOTATION = 'etcd-recover.io/replicas-before';
export { RECOVERY_LABEL };

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
  private readonly batch: BatchV1Api;
  private readonly objects: KubernetesObjectApi;
  private readonly stopMs: number;
  private readonly jobMs: number;
  private readonly cronJobs: ComponentCronJobs;

  constructor(
    readonly kc: KubeConfig,
    readonly contract: RecoveryContract,
    timeouts: KubeTargetTimeouts = {},
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.batch = kc.makeApiClient(BatchV1Api);
    this.objects = KubernetesObjectApi.makeApiClient(kc);
    this.stopMs = timeouts.stopMs ?? 300_000;
    this.jobMs = timeouts.jobMs ?? 900_000;
    this.cronJobs = new ComponentCronJobs(this.batch, contract, this.stopMs, (name, patch) => this.mergePatch('batch/v1', 'CronJob', name, this.ns, patch), (name) => this.deleteJob(name));
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
    const ns = this.ns;
    const c = this.contract;
    const perms: Permission[] = [
      { verb: 'get', resource: 'statefulsets', group: 'apps', namespace: ns, name: c.etcd.statefulSet },
      { verb: 'patch', resource: 'statefulsets', group: 'apps', namespace: ns, name: c.etcd.statefulSet },
      { verb: 'list', resource: 'pods', namespace: ns },
      { verb: 'get', resource: 'pods', subresource: 'proxy', namespace: ns },
      { verb: 'get', resource: 'persistentvolumeclaims', namespace: ns },
      { verb: 'create', resource: 'persistentvolumeclaims', namespace: ns },
      { verb: 'get', resource: 'cronjobs', group: 'batch', namespace: ns, name: `${c.cluster}-backup` },
      { verb: 'create', resource: 'jobs', group: 'batch', namespace: ns },
      { verb: 'get', resource: 'jobs', group: 'batch', namespace: ns },
      { verb: 'list', resource: 'jobs', group: 'batch', namespace: ns },
      { verb: 'delete', resource: 'jobs', group: 'batch', namespace: ns },
    ];
    // The component's CronJobs are suspended during the restore and put back as they were.
    for (const name of componentCronJobs(c)) {
      perms.push({ verb: 'get', resource: 'cronjobs', group: 'batch', namespace: ns, name }, { verb: 'patch', resource: 'cronjobs', group: 'batch', namespace: ns, name });
    }
    for (const d of c.dependents) {
      const resource = d.kind === 'Deployment' ? 'deployments' : 'statefulsets';
      perms.push({ verb: 'get', resource, group: 'apps', namespace: d.namespace, name: d.name }, { verb: 'patch', resource, group: 'apps', namespace: d.namespace, name: d.name });
    }
    // The control-plane Deployments restarted after the restore. (Reading the hosted cluster's kubeconfig
    // Secret is not required: without it the after-restore steps are left undone and reported.)
    for (const d of c.afterRestore?.rolloutDeployments ?? []) {
      perms.push({ verb: 'get', resource: 'deployments', group: 'apps', namespace: ns, name: d }, { verb: 'patch', resource: 'deployments', group: 'apps', namespace: ns, name: d });
    }
    if (c.pause) {
      const group = c.pause.apiVersion.includes('/') ? c.pause.apiVersion.split('/')[0]! : '';
      const pns = c.pause.namespace ?? ns;
      perms.push({ verb: 'get', resource: c.pause.resource, group, namespace: pns, name: c.pause.name }, { verb: 'patch', resource: c.pause.resource, group, namespace: pns, name: c.pause.name });
    }
    return perms;
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

  // ------------------------------------------------------------------ Jobs

  /** A Job name unique to this recovery and step (reruns find the same Job). */
  private jobName(recoveryId: string, what: string): string {
    return recoveryJobName(this.cluster, recoveryId, what);
  }

  /**
   * Runs (or, on a rerun, finds) one recovery Job built from the backup CronJob's template, waits for
   * it, and fails with the pod's log tail. A failed Job from an earlier run is replaced.
   */
  private async runJob(
    recoveryId: string,
    what: string,
    args: string[],
    ctx: StepContext,
    mutate?: (spec: NonNullable<V1Job['spec']>) => void,
    opts: { removeWhenDone?: boolean } = {},
  ): Promise<void> {
    const ns = this.ns;
    const name = this.jobName(recoveryId, what);
    let existing = await this.readJob(name);
    if (existing && jobFailed(existing)) {
      ctx.progress(`job ${name} failed in an earlier run; replacing it`);
      await this.deleteJob(name);
      const deadline = Date.now() + 60_000;
      while ((existing = await this.readJob(name)) && Date.now() < deadline) await pollDelay(ctx.signal);
    }
    if (!existing) {
      const spec = await jobSpecFromCronJob(this.kc, ns, `${this.cluster}-backup`, args);
      spec.template.spec!.containers[0]!.name = 'recover';
      openAgeKey(spec, this.contract.backup.encryption?.secretName);
      spec.backoffLimit = 1;
      spec.activeDeadlineSeconds = Math.ceil(this.jobMs / 1000);
      const labels = { ...(spec.template.metadata?.labels ?? {}), 'etcd-recover.io/job': 'recovery', [RECOVERY_LABEL]: recoveryId };
      spec.template.metadata = { ...(spec.template.metadata ?? {}), labels };
      mutate?.(spec);
      const body: V1Job = { metadata: { name, namespace: ns, labels: { ...labels, 'etcd-recover.io/step': what } }, spec };
      try {
        await this.batch.createNamespacedJob({ namespace: ns, body });
      } catch (e) {
        if (statusOf(e) !== 409) throw apiError(`create job ${ns}/${name}`, e);
      }
      ctx.progress(`job ${ns}/${name} started`);
    } else {
      ctx.progress(`job ${ns}/${name} from an earlier run is still there; waiting for it`);
    }
    const { succeeded } = await awaitJob(this.kc, ns, name, this.jobMs + 60_000, ctx.signal);
    if (!succeeded) {
      const { log } = await jobOutcome(this.kc, ns, name);
      throw new EtcdRecoverError('STEP_FAILED', `job ${ns}/${name} failed${log ? `: ${log}` : ''}`, { hint: `kubectl -n ${ns} logs job/${name}` });
    }
    // A finished pod that mounts a PVC still counts as using it for the PVC protection finalizer:
    // delete the Job (its result is in the bucket) so it never pins a member's volume.
    if (opts.removeWhenDone) await this.deleteJob(name);
  }

  private async deleteJob(name: string): Promise<void> {
    await this.batch.deleteNamespacedJob({ namespace: this.ns, name, propagationPolicy: 'Background' }).catch((e) => {
      if (statusOf(e) !== 404) throw apiError(`delete job ${this.ns}/${name}`, e);
    });
  }

  private async readJob(name: string): Promise<V1Job | undefined> {
    try {
      return await this.batch.readNamespacedJob({ namespace: this.ns, name });
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw apiError(`get job ${this.ns}/${name}`, e);
    }
  }

  /** A Job spec that mounts one member's PVC where etcd mounts it, as etcd's own user. */
  private async volumeJobMutation(member: string): Promise<(spec: NonNullable<V1Job['spec']>) => void> {
    const sts = await this.readStatefulSet();
    const podSpec = sts.spec?.template.spec;
    const etcdContainer = podSpec?.containers.find((c) => c.name === this.contract.etcd.containerName) ?? podSpec?.containers[0];
    const pvc = this.contract.etcd.members.find((m) => m.name === member)!.pvc;
    const mountPath = this.contract.etcd.mountPath;
    return (spec) => {
      const pod = spec.template.spec!;
      pod.serviceAccountName = this.contract.agent.restoreServiceAccount;
      pod.automountServiceAccountToken = false;
      // The data belongs to etcd's user: run as it (the template's non-root agent user may not write it).
      pod.securityContext = podSpec?.securityContext ?? {};
      const c = pod.containers[0]!;
      c.securityContext = {
        ...(etcdContainer?.securityContext?.runAsUser !== undefined ? { runAsUser: etcdContainer.securityContext.runAsUser } : {}),
        ...(etcdContainer?.securityContext?.runAsGroup !== undefined ? { runAsGroup: etcdContainer.securityContext.runAsGroup } : {}),
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      };
      pod.volumes = [...(pod.volumes ?? []), { name: 'etcd-data', persistentVolumeClaim: { claimName: pvc } }];
      c.volumeMounts = [...(c.volumeMounts ?? []), { name: 'etcd-data', mountPath }];
      // Keep the Job beside etcd's data: the scheduler places it where the volume can be attached.
      if (podSpec?.tolerations) pod.tolerations = podSpec.tolerations;
      if (podSpec?.nodeSelector) pod.nodeSelector = podSpec.nodeSelector;
    };
  }

  // ------------------------------------------------------------------ restore source

  async captureLive(member: string, labels: Record<string, string>, ctx: StepContext): Promise<string> {
    const found = async () => (await ctx.catalog.list(ctx.signal)).snapshots.find((s) => s.labels?.['recovery'] === ctx.recoveryId && s.labels?.['reason'] === labels['reason']);
    const earlier = await found();
    if (earlier) return earlier.name;
    const spec = this.members().find((m) => m.name === member)!;
    const args = ['backup', 'create', '--quiet', '--member', spec.clientURL, '--allow-no-leader', ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])];
    // One Job name per purpose: the backup after the restore must not find the pre-restore snapshot's Job done.
    await this.runJob(ctx.recoveryId, labels['reason'] === 'post-recovery' ? `backup-after-${member}` : `snapshot-${member}`, args, ctx);
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
    await this.runJob(ctx.recoveryId, 'point-in-time', args, ctx, (spec) => {
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
    await this.runJob(ctx.recoveryId, 'verify', ['backup', 'verify', record.name, '--quiet'], ctx);
    const rec = await ctx.catalog.get(record.name, ctx.signal);
    if (!rec.verification?.ok || rec.verification.sha256 !== record.sha256) {
      throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `restore point ${record.name} did not verify in the cluster`, { hint: 'nothing was changed; choose another backup with --snapshot' });
    }
    await ctx.catalog.store.put(this.verifiedKey(ctx.recoveryId), JSON.stringify({ name: record.name, sha256: record.sha256, at: new Date().toISOString() }), { contentType: 'application/json' });
    ctx.progress(`verified ${record.name} in the cluster: revision ${rec.verification.revision}, ${rec.verification.totalKeys} keys`);
  }

  // ------------------------------------------------------------------ workloads

  private async readStatefulSet(): Promise<V1StatefulSet> {
    return (await this.readObject('apps/v1', 'StatefulSet', this.contract.etcd.statefulSet, this.ns)) as V1StatefulSet;
  }

  private async readObject(apiVersion: string, kind: string, name: string, namespace: string): Promise<KubernetesObject & { spec?: any; status?: any }> {
    try {
      return (await this.objects.read({ apiVersion, kind, metadata: { name, namespace } })) as KubernetesObject & { spec?: any };
    } catch (e) {
      throw apiError(`get ${kind.toLowerCase()} ${namespace}/${name}`, e);
    }
  }

  private async mergePatch(apiVersion: string, kind: string, name: string, namespace: string, patch: Record<string, unknown>): Promise<void> {
    try {
      await this.objects.patch({ apiVersion, kind, metadata: { name, namespace }, ...patch } as KubernetesObject, undefined, undefined, 'etcd-recover', undefined, PatchStrategy.MergePatch);
    } catch (e) {
      throw apiError(`patch ${kind.toLowerCase()} ${namespace}/${name}`, e);
    }
  }

  /** Scales a workload to zero, remembering its replicas in an annotation (idempotent). Returns it as read. */
  private async scaleDown(apiVersion: string, kind: string, name: string, namespace: string): Promise<KubernetesObject & { spec?: any }> {
    const o = await this.readObject(apiVersion, kind, name, namespace);
    const replicas = o.spec?.replicas ?? 1;
    if (replicas > 0) {
      await this.mergePatch(apiVersion, kind, name, namespace, { metadata: { name, namespace, annotations: { [REPLICAS_ANNOTATION]: String(replicas) } }, spec: { replicas: 0 } });
    }
    return o;
  }

  /** Scales a workload back to what the annotation remembers (or `fallback`), and forgets it. */
  private async scaleUp(apiVersion: string, kind: string, name: string, namespace: string, fallback: number): Promise<number> {
    const o = await this.readObject(apiVersion, kind, name, namespace);
    const remembered = Number(o.metadata?.annotations?.[REPLICAS_ANNOTATION]);
    const replicas = Number.isInteger(remembered) && remembered > 0 ? remembered : (o.spec?.replicas || fallback);
    await this.mergePatch(apiVersion, kind, name, namespace, { metadata: { name, namespace, annotations: { [REPLICAS_ANNOTATION]: null } }, spec: { replicas } });
    return replicas;
  }

  private async podsOf(o: { spec?: any }, namespace: string): Promise<string[]> {
    const match = o.spec?.selector?.matchLabels as Record<string, string> | undefined;
    if (!match) return [];
    const labelSelector = Object.entries(match).map(([k, v]) => `${k}=${v}`).join(',');
    try {
      return (await this.core.listNamespacedPod({ namespace, labelSelector })).items
        // A terminated pod (Succeeded/Failed, kept until garbage-collected) runs nothing and holds nothing.
        .filter((p) => !p.metadata?.labels?.['job-name'] && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
        .map((p) => p.metadata!.name!);
    } catch (e) {
      throw apiError(`list pods in ${namespace}`, e);
    }
  }

  private async waitNoPods(what: string, o: { spec?: any }, namespace: string, ctx: StepContext): Promise<void> {
    const deadline = Date.now() + this.stopMs;
    for (;;) {
      const left = await this.podsOf(o, namespace);
      if (!left.length) return;
      if (Date.now() > deadline) {
        throw new EtcdRecoverError('TIMEOUT', `${what}: pods ${left.join(', ')} still exist ${Math.round(this.stopMs / 1000)} s after scaling to zero`, {
          hint: `kubectl -n ${namespace} get pods ${left.join(' ')}; rerun to resume`,
        });
      }
      await pollDelay(ctx.signal);
    }
  }

  private pauseTarget() {
    const p = this.contract.pause!;
    return { apiVersion: p.apiVersion, kind: p.kind, name: p.name, namespace: p.namespace ?? this.ns };
  }

  async quiesce(ctx: StepContext): Promise<void> {
    // First the component's own CronJobs: no backup, prune, verification, heal or defrag starts
    // while etcd is being restored.
    await this.cronJobs.suspend(ctx);
    if (this.contract.pause) {
      const p = this.pauseTarget();
      await this.mergePatch(p.apiVersion, p.kind, p.name, p.namespace, this.contract.pause.pausePatch);
      ctx.progress(`paused reconciliation of ${p.kind} ${p.namespace}/${p.name}`);
    }
    const scaled = [];
    for (const d of this.contract.dependents) {
      scaled.push({ d, o: await this.scaleDown(d.apiVersion, d.kind, d.name, d.namespace) });
      ctx.progress(`scaled ${d.kind} ${d.namespace}/${d.name} to 0`);
    }
    for (const { d, o } of scaled) await this.waitNoPods(`${d.kind} ${d.namespace}/${d.name}`, o, d.namespace, ctx);
    await this.cronJobs.drainRuns(ctx);
  }

  async isQuiesced(ctx?: StepContext): Promise<boolean> {
    const seen = await this.cronJobs.suspendedBefore();
    if (!seen || (await this.cronJobs.runs()).length) return false;
    if (this.contract.pause) {
      const p = this.pauseTarget();
      if (!contains(await this.readObject(p.apiVersion, p.kind, p.name, p.namespace), this.contract.pause.pausePatch)) return false;
    }
    for (const d of this.contract.dependents) {
      const o = await this.readObject(d.apiVersion, d.kind, d.name, d.namespace);
      if (o.spec?.replicas !== 0 || (await this.podsOf(o, d.namespace)).length) return false;
    }
    // Quiesced by a run that died before its journal said so: the journal learns the CronJobs' prior
    // state from their annotations.
    if (ctx && !ctx.facts[CRONJOBS_FACT]) ctx.facts[CRONJOBS_FACT] = seen;
    return true;
  }

  async resume(ctx: StepContext): Promise<void> {
    for (const d of this.contract.dependents) {
      const n = await this.scaleUp(d.apiVersion, d.kind, d.name, d.namespace, d.replicas);
      ctx.progress(`scaled ${d.kind} ${d.namespace}/${d.name} back to ${n}`);
    }
    if (this.contract.pause) {
      const p = this.pauseTarget();
      await this.mergePatch(p.apiVersion, p.kind, p.name, p.namespace, this.contract.pause.resumePatch);
      ctx.progress(`resumed reconciliation of ${p.kind} ${p.namespace}/${p.name}`);
    }
    await this.cronJobs.restore(ctx);
  }

  async isResumed(): Promise<boolean> {
    for (const d of this.contract.dependents) {
      const o = await this.readObject(d.apiVersion, d.kind, d.name, d.namespace);
      if (!o.spec?.replicas || o.metadata?.annotations?.[REPLICAS_ANNOTATION]) return false;
    }
    if (this.contract.pause) {
      const p = this.pauseTarget();
      if (!contains(await this.readObject(p.apiVersion, p.kind, p.name, p.namespace), this.contract.pause.resumePatch)) return false;
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
    const o = await this.readObject('apps/v1', 'Deployment', name, namespace);
    return o.spec?.template?.metadata?.annotations?.[RESTARTED_BY_ANNOTATION] === ctx.recoveryId;
  }

  /** What `kubectl rollout restart` does: a new pod-template annotation, so every pod is replaced. */
  async rollout(d: string, ctx: StepContext): Promise<void> {
    const { namespace, name } = this.splitDeployment(d);
    await this.mergePatch('apps/v1', 'Deployment', name, namespace, {
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
        const mutate = await this.volumeJobMutation(name);
        // Beside the member's pod: a ReadWriteOnce volume in use attaches only on its node.
        const pod = await this.core.readNamespacedPod({ namespace: this.ns, name }).catch(() => undefined);
        const nodeName = pod && !pod.metadata?.deletionTimestamp ? pod.spec?.nodeName : undefined;
        const args = ['agent', 'statfs', '--path', this.contract.etcd.mountPath, '--recovery-id', ctx.recoveryId, '--member', name, '--quiet'];
        await this.runJob(ctx.recoveryId, `space-${name}-${Date.now().toString(36)}`, args, ctx, (spec) => {
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
    const sts = await this.scaleDown('apps/v1', 'StatefulSet', this.contract.etcd.statefulSet, this.ns);
    ctx.progress(`scaled statefulset ${this.ns}/${this.contract.etcd.statefulSet} to 0; waiting for its pods to terminate`);
    await this.waitNoPods(`statefulset ${this.ns}/${this.contract.etcd.statefulSet}`, sts, this.ns, ctx);
  }

  async areStopped(names: string[]): Promise<boolean> {
    this.requireAll(names);
    const sts = await this.readStatefulSet();
    return sts.spec?.replicas === 0 && !(await this.podsOf(sts, this.ns)).length;
  }

  async startMembers(names: string[], mode: { initialState: 'new' | 'existing' }, ctx: StepContext): Promise<void> {
    this.requireAll(names);
    if (mode.initialState !== 'new') throw new EtcdRecoverError('INTERNAL', 'joining members start through member-init on Kubernetes');
    const n = await this.scaleUp('apps/v1', 'StatefulSet', this.contract.etcd.statefulSet, this.ns, this.contract.etcd.replicas);
    ctx.progress(`scaled statefulset ${this.ns}/${this.contract.etcd.statefulSet} back to ${n}`);
  }

  async areStarted(names: string[]): Promise<boolean> {
    const sts = await this.readStatefulSet();
    if (!sts.spec?.replicas) return false;
    const pods = new Set(await this.podsOf(sts, this.ns));
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
    await this.runJob(ctx.recoveryId, `aside-${name}`, args, ctx, await this.volumeJobMutation(name), { removeWhenDone: true });
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
    await this.runJob(ctx.recoveryId, `restore-${name}`, args, ctx, await this.volumeJobMutation(name), { removeWhenDone: true });
    ctx.progress(`${name}: restored ${record.name} (revision ${record.revision} + ${p.bump}) in the cluster`);
  }

  /** Key count and HashKV of every member, measured by a Job in the cluster and reported through the bucket. */
  async keyspace(ctx: StepContext, countAt?: number): Promise<Keyspace> {
    const key = keyspaceReportKey(this.cluster, ctx.recoveryId);
    await ctx.catalog.store.delete(key, ctx.signal).catch(() => undefined);
    // A new Job each time: the keyspace is measured now, not when an earlier run measured it.
    await this.runJob(ctx.recoveryId, `keyspace-${Date.now().toString(36)}`, ['agent', 'keyspace', '--recovery-id', ctx.recoveryId, ...(countAt !== undefined ? ['--count-at', String(countAt)] : []), '--quiet'], ctx);
    const got = await readJson<Keyspace>(ctx.catalog.store, key, ctx.signal);
    if (!got) throw new EtcdRecoverError('INTERNAL', `the keyspace job succeeded but wrote no ${key}`);
    return got.value;
  }
}

/** Whether `o` already holds every field of a merge patch (null = absent). */
function contains(o: unknown, patch: unknown): boolean {
  if (patch === null) return o === undefined || o === null;
  if (typeof patch !== 'object' || Array.isArray(patch)) return JSON.stringify(o) === JSON.stringify(patch);
  if (typeof o !== 'object' || o === null) return false;
  return Object.entries(patch as Record<string, unknown>).every(([k, v]) => contains((o as Record<string, unknown>)[k], v));
}

/**
 * Recovery Jobs are made from the backup CronJob's template, which mounts only the age key's public
 * `recipients` (a backup job never needs to decrypt). A recovery Job verifies and restores encrypted
 * backups: it gets the whole key Secret, and the identity file beside the recipients.
 */
function openAgeKey(spec: NonNullable<V1Job['spec']>, secretName: string | undefined): void {
  if (!secretName) return;
  const pod = spec.template.spec!;
  const volume = pod.volumes?.find((v) => v.secret?.secretName === secretName);
  const c = pod.containers[0]!;
  const mount = volume && c.volumeMounts?.find((m) => m.name === volume.name);
  if (!volume || !mount) return;
  delete volume.secret!.items;
  const env = (c.env ?? []).filter((e) => e.name !== 'ETCD_RECOVER_AGE_IDENTITY_FILE');
  c.env = [...env, { name: 'ETCD_RECOVER_AGE_IDENTITY_FILE', value: `${mount.mountPath}/identity` }];
}
