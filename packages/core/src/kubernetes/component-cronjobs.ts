import type { BatchV1Api, V1CronJob, V1Job } from '@kubernetes/client-node';
import type { RecoveryContract } from '../contract/recovery-contract.js';
import type { StepContext } from '../recovery/target.js';
import { RECOVERY_LABEL, apiError, componentCronJobs, jobFailed, pollDelay, statusOf } from './kube-cluster.js';

/** Annotation remembering a component CronJob's `spec.suspend` while a recovery holds it suspended. */
export const SUSPEND_ANNOTATION = 'etcd-recover.io/suspend-before';
/** Journal fact: each component CronJob's `spec.suspend` before the recovery suspended it. */
export const CRONJOBS_FACT = 'cronJobsSuspendBefore';

/**
 * The component's own CronJobs (backup, prune, verify, heal, defrag) around a full restore: suspended
 * in quiesce, their running Jobs drained, and put back exactly as they were in resume — remembered in
 * the journal and in an annotation, so that no crash can leave them suspended or unsuspend one its
 * owner had suspended.
 */
export class ComponentCronJobs {
  constructor(
    private readonly batch: BatchV1Api,
    private readonly contract: RecoveryContract,
    private readonly stopMs: number,
    private readonly patch: (name: string, patch: Record<string, unknown>) => Promise<void>,
    private readonly deleteJob: (name: string) => Promise<void>,
  ) {}

  private get ns(): string {
    return this.contract.namespace;
  }

  /** Each CronJob's prior `spec.suspend` when every one is suspended by a recovery; else undefined. */
  async suspendedBefore(): Promise<Record<string, boolean> | undefined> {
    const seen: Record<string, boolean> = {};
    for (const name of componentCronJobs(this.contract)) {
      const cj = await this.read(name);
      if (!cj) continue;
      const remembered = cj.metadata?.annotations?.[SUSPEND_ANNOTATION];
      if (cj.spec?.suspend !== true || remembered === undefined) return undefined;
      seen[name] = remembered === 'true';
    }
    return seen;
  }

  /** Whether no CronJob still carries a recovery's annotation. */
  async restored(): Promise<boolean> {
    for (const name of componentCronJobs(this.contract)) {
      const cj = await this.read(name);
      if (cj?.metadata?.annotations?.[SUSPEND_ANNOTATION] !== undefined) return false;
    }
    return true;
  }

  private async read(name: string): Promise<V1CronJob | undefined> {
    try {
      return await this.batch.readNamespacedCronJob({ namespace: this.ns, name });
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw apiError(`get cronjob ${this.ns}/${name}`, e);
    }
  }

  /**
   * Suspends every CronJob of the component, remembering each one's `spec.suspend` twice: in the
   * journal's facts (ctx.facts, persisted) and in an annotation written by the same patch (so that a
   * crash between the patch and the journal write still knows it). A CronJob already suspended by this
   * recovery keeps what it remembered.
   */
  async suspend(ctx: StepContext): Promise<void> {
    const before = ((ctx.facts[CRONJOBS_FACT] as Record<string, boolean> | undefined) ?? {});
    for (const name of componentCronJobs(this.contract)) {
      const cj = await this.read(name);
      if (!cj) continue;
      const remembered = cj.metadata?.annotations?.[SUSPEND_ANNOTATION];
      const was = name in before ? before[name]! : remembered !== undefined ? remembered === 'true' : cj.spec?.suspend === true;
      before[name] = was;
      ctx.facts[CRONJOBS_FACT] = before;
      if (cj.spec?.suspend === true && remembered !== undefined) continue;
      await this.patch(name, { metadata: { name, namespace: this.ns, annotations: { [SUSPEND_ANNOTATION]: String(was) } }, spec: { suspend: true } });
      ctx.progress(`suspended cronjob ${this.ns}/${name}${was ? ' (it was suspended already; it stays so afterwards)' : ''}`);
    }
  }

  /** Puts every CronJob back as it was (the journal's facts, else the annotation) and forgets it. */
  async restore(ctx: StepContext): Promise<void> {
    const before = (ctx.facts[CRONJOBS_FACT] as Record<string, boolean> | undefined) ?? {};
    for (const name of componentCronJobs(this.contract)) {
      const cj = await this.read(name);
      if (!cj) continue;
      const remembered = cj.metadata?.annotations?.[SUSPEND_ANNOTATION];
      if (remembered === undefined && !(name in before)) continue;
      const was = name in before ? before[name]! : remembered === 'true';
      await this.patch(name, { metadata: { name, namespace: this.ns, annotations: { [SUSPEND_ANNOTATION]: null } }, spec: { suspend: was } });
      ctx.progress(`cronjob ${this.ns}/${name} back to suspend: ${was}`);
    }
  }

  /** Unfinished Jobs of the component's CronJobs (scheduled, or made from their templates by hand). */
  async runs(): Promise<V1Job[]> {
    const crons = componentCronJobs(this.contract);
    let jobs;
    try {
      jobs = (await this.batch.listNamespacedJob({ namespace: this.ns, labelSelector: 'etcd-recover.io/job' })).items;
    } catch (e) {
      throw apiError(`list jobs in ${this.ns}`, e);
    }
    return jobs.filter((j) => {
      const name = j.metadata?.name ?? '';
      if (j.metadata?.labels?.['etcd-recover.io/job'] === 'recovery' || j.metadata?.labels?.[RECOVERY_LABEL]) return false;
      const ours = j.metadata?.ownerReferences?.some((r) => r.kind === 'CronJob' && crons.includes(r.name)) || crons.some((c) => name.startsWith(`${c}-`));
      const finished = (j.status?.succeeded ?? 0) > 0 || jobFailed(j) || j.status?.conditions?.some((c) => c.type === 'Complete' && c.status === 'True');
      return ours && !finished && !j.metadata?.deletionTimestamp;
    });
  }

  /**
   * Jobs of the component's CronJobs that were already running: waited for (a backup, verification,
   * defrag or heal pass finishes in seconds to minutes; a heal pass that wants to act finds the lock
   * held and skips). Past the stop timeout they are deleted — each is repeated at its next schedule.
   */
  async drainRuns(ctx: StepContext): Promise<void> {
    const deadline = Date.now() + this.stopMs;
    let said = false;
    for (;;) {
      const running = await this.runs();
      if (!running.length) return;
      const names = running.map((j) => j.metadata!.name!);
      if (!said) ctx.progress(`waiting for running job(s) ${names.join(', ')} of the component's CronJobs to finish`);
      said = true;
      if (Date.now() > deadline) {
        for (const n of names) await this.deleteJob(n);
        ctx.progress(`deleted job(s) ${names.join(', ')}: still running ${Math.round(this.stopMs / 1000)} s after their CronJobs were suspended (they run again at their next schedule)`);
        const gone = Date.now() + 120_000;
        while ((await this.runs()).length && Date.now() < gone) await pollDelay(ctx.signal);
        return;
      }
      await pollDelay(ctx.signal);
    }
  }
}
