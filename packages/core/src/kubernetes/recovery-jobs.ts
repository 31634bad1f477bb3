import { BatchV1Api, KubeConfig, type V1Job, type V1StatefulSet } from '@kubernetes/client-node';
import { EtcdRecoverError } from '../errors.js';
import type { RecoveryContract } from '../contract/recovery-contract.js';
import type { StepContext } from '../recovery/target.js';
import { RECOVERY_LABEL, apiError, awaitJob, jobFailed, jobOutcome, jobSpecFromCronJob, pollDelay, recoveryJobName, statusOf } from './kube-cluster.js';

/** Changes a recovery Job's spec before it is created (mounts, placement). */
export type JobMutation = (spec: NonNullable<V1Job['spec']>) => void;

/**
 * The recovery's Jobs in the cluster: each built from the component's backup CronJob template (image,
 * bucket credentials, contract), named by recovery and step so that a rerun finds the Job of an
 * earlier run instead of starting a second one, and reporting back through the bucket.
 */
export class RecoveryJobs {
  private readonly batch: BatchV1Api;

  /** `jobMs`: the most one Job may run (its activeDeadlineSeconds). */
  constructor(
    private readonly kc: KubeConfig,
    private readonly contract: RecoveryContract,
    private readonly jobMs: number,
  ) {
    this.batch = kc.makeApiClient(BatchV1Api);
  }

  private get ns(): string {
    return this.contract.namespace;
  }

  /**
   * Runs (or, on a rerun, finds) one recovery Job, waits for it, and fails with the pod's log tail. A
   * failed Job from an earlier run is replaced.
   */
  async run(recoveryId: string, what: string, args: string[], ctx: StepContext, mutate?: JobMutation, opts: { removeWhenDone?: boolean } = {}): Promise<void> {
    const ns = this.ns;
    const name = recoveryJobName(this.contract.cluster, recoveryId, what);
    let existing = await this.read(name);
    if (existing && jobFailed(existing)) {
      ctx.progress(`job ${name} failed in an earlier run; replacing it`);
      await this.delete(name);
      const deadline = Date.now() + 60_000;
      while ((existing = await this.read(name)) && Date.now() < deadline) await pollDelay(ctx.signal);
    }
    if (!existing) {
      const spec = await jobSpecFromCronJob(this.kc, ns, `${this.contract.cluster}-backup`, args);
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
    if (opts.removeWhenDone) await this.delete(name);
  }

  async delete(name: string): Promise<void> {
    await this.batch.deleteNamespacedJob({ namespace: this.ns, name, propagationPolicy: 'Background' }).catch((e) => {
      if (statusOf(e) !== 404) throw apiError(`delete job ${this.ns}/${name}`, e);
    });
  }

  private async read(name: string): Promise<V1Job | undefined> {
    try {
      return await this.batch.readNamespacedJob({ namespace: this.ns, name });
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw apiError(`get job ${this.ns}/${name}`, e);
    }
  }

  /** A Job spec that mounts one member's PVC where etcd mounts it (in `sts`), as etcd's own user. */
  volumeMutation(member: string, sts: V1StatefulSet): JobMutation {
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
