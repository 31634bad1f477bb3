import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError, isEtcdRecoverError } from '../errors.js';
import {
  MANUAL_CRONJOB_CHECKS,
  MANUAL_POD_CHECKS,
  cronJobRepairPatch,
  manualRolloutCheck,
  stuckCronJobs,
  stuckPods,
  type AfterRestoreOutcome,
} from './after-restore.js';
import type { PlanAfterRestore, PlanStep } from './plan.js';
import type { HostedCluster } from './ports.js';
import type { RecoveryTarget, StepContext } from './target.js';

/** Where the after-restore outcomes live in the journal's facts (and so in the final report). */
export const AFTER_RESTORE_FACT = 'afterRestore';

/**
 * The after-restore steps never fail the recovery: etcd is restored and verified by then. What they
 * could not do is recorded as left undone, with what to check by hand, and the run completes.
 * Only an interruption (ABORTED) stops the run.
 */
export class AfterRestoreSteps {
  /** One wait for the hosted API server per run: a later step after a failed wait tries once. */
  private deadline: number | undefined;

  constructor(
    private readonly spec: PlanAfterRestore,
    private readonly target: RecoveryTarget,
    /** How long the hosted API server may take to answer once its dependents are back. */
    private readonly waitMs: number,
  ) {}

  static outcomes(facts: Record<string, unknown>): Record<string, AfterRestoreOutcome> {
    return ((facts[AFTER_RESTORE_FACT] ??= {}) as Record<string, AfterRestoreOutcome>);
  }

  /** Runs one step; returns the note the journal keeps for it. */
  async run(step: PlanStep, ctx: StepContext): Promise<string> {
    let outcome: AfterRestoreOutcome;
    try {
      outcome = step.kind === 'rollout' ? await this.rollout(step, ctx) : await this.hosted(step, ctx);
    } catch (e) {
      if (ctx.signal?.aborted || (isEtcdRecoverError(e) && e.code === 'ABORTED')) throw e;
      const manual = step.kind === 'repair-cronjobs' ? MANUAL_CRONJOB_CHECKS : step.kind === 'stuck-pods' ? MANUAL_POD_CHECKS : [manualRolloutCheck(step.id.slice('rollout:'.length))];
      outcome = { step: step.id, status: 'left-undone', actions: [], reason: (e as Error).message, manual };
      ctx.progress(`warning: ${step.id} left undone: ${outcome.reason}; check by hand: ${manual.join('; ')}`);
    }
    AfterRestoreSteps.outcomes(ctx.facts)[step.id] = outcome;
    if (outcome.status === 'left-undone') return `left undone: ${outcome.reason}`;
    const failed = outcome.actions.filter((a) => a.done === 'failed').length;
    return `${outcome.actions.length} found${failed ? `, ${failed} failed` : ''}`;
  }

  private async rollout(step: PlanStep, ctx: StepContext): Promise<AfterRestoreOutcome> {
    const d = step.id.slice('rollout:'.length);
    if (!this.target.rollout) throw new EtcdRecoverError('USAGE', `${this.target.describe()} cannot roll out Deployments`);
    if (!(await this.target.isRolledOut?.(d, ctx))) await this.target.rollout(d, ctx);
    ctx.progress(`forced a rollout of Deployment ${d}`);
    return { step: step.id, status: 'done', actions: [], deployment: d };
  }

  /** The hosted cluster, once it answers (it was just scaled back up), within the run's one wait. */
  private async reach(ctx: StepContext): Promise<{ api: HostedCluster; first: () => Promise<void> }> {
    if (!this.target.hostedCluster) throw new EtcdRecoverError('USAGE', `${this.target.describe()} has no hosted cluster`);
    const api = await this.target.hostedCluster(ctx);
    this.deadline ??= Date.now() + this.waitMs;
    return {
      api,
      // Retries what a starting API server answers (refused, 5xx, a timeout); a 401/403 or a 4xx is final.
      first: async () => {
        for (let delay = 1_000; ; delay = Math.min(delay * 2, 5_000)) {
          try {
            await api.listCronJobs(ctx.signal);
            return;
          } catch (e) {
            const final = isEtcdRecoverError(e) && (e.code === 'FORBIDDEN' || e.code === 'ABORTED' || /: 4(?!29)\d\d /.test(e.message));
            if (final) throw e;
            if (Date.now() + delay > this.deadline!) {
              throw new EtcdRecoverError(isEtcdRecoverError(e) ? e.code : 'KUBERNETES_ERROR', `${api.describe()} did not answer within ${Math.round(this.waitMs / 1000)} s of the dependents coming back: ${(e as Error).message}`, { cause: e });
            }
            await sleep(delay, undefined, ctx.signal ? { signal: ctx.signal } : undefined);
          }
        }
      },
    };
  }

  private async hosted(step: PlanStep, ctx: StepContext): Promise<AfterRestoreOutcome> {
    const { api, first } = await this.reach(ctx);
    await first();
    const now = new Date();
    if (step.kind === 'repair-cronjobs') {
      const [cronJobs, jobs] = [await api.listCronJobs(ctx.signal), await api.listJobs(ctx.signal)];
      const actions: AfterRestoreOutcome['actions'] = [];
      for (const a of stuckCronJobs(now, cronJobs, jobs)) {
        const cj = cronJobs.find((c) => c.namespace === a.namespace && c.name === a.name)!;
        try {
          await api.patchCronJobStatus(a.namespace, a.name, cronJobRepairPatch(a, cj), ctx.signal);
          actions.push({ ...a, done: 'repaired' });
          ctx.progress(`repaired CronJob ${a.namespace}/${a.name}: ${a.why}`);
        } catch (e) {
          if (ctx.signal?.aborted) throw e;
          actions.push({ ...a, done: 'failed', error: (e as Error).message });
          ctx.progress(`warning: CronJob ${a.namespace}/${a.name} (${a.why}) not repaired: ${(e as Error).message}`);
        }
      }
      if (!actions.length) ctx.progress(`no stuck CronJob among the ${cronJobs.length} of the hosted cluster`);
      return { step: step.id, status: 'done', actions };
    }
    const pods = await api.listPods(ctx.signal);
    const actions: AfterRestoreOutcome['actions'] = [];
    for (const p of stuckPods(now, pods, this.spec.stuckPodSeconds)) {
      const what = `pod ${p.namespace}/${p.name} (${p.state} for ${p.ageSeconds} s on ${p.node})`;
      if (!this.spec.deleteStuckPods) {
        actions.push({ ...p, done: 'reported' });
        ctx.progress(`stuck: ${what}; fix: kubectl -n ${p.namespace} delete pod ${p.name} (quorum --yes deletes it)`);
        continue;
      }
      try {
        await api.deletePod(p.namespace, p.name, ctx.signal);
        actions.push({ ...p, done: 'deleted' });
        ctx.progress(`deleted stuck ${what}`);
      } catch (e) {
        if (ctx.signal?.aborted) throw e;
        actions.push({ ...p, done: 'failed', error: (e as Error).message });
        ctx.progress(`warning: stuck ${what} not deleted: ${(e as Error).message}`);
      }
    }
    if (!actions.length) ctx.progress(`no pod of the hosted cluster stuck in ContainerCreating or Init for over ${this.spec.stuckPodSeconds} s`);
    return { step: step.id, status: 'done', actions };
  }
}

/** The final report's afterRestore: what was done, what was left undone, what to check by hand. */
export interface AfterRestoreReport {
  steps: AfterRestoreOutcome[];
  /** Step ids whose work was not done (with the reason in their outcome). */
  leftUndone: string[];
  /** Without a hosted-cluster kubeconfig (or when it did not answer): what to check by hand. */
  manual: string[];
}

export function afterRestoreReport(spec: PlanAfterRestore | undefined, facts: Record<string, unknown>): AfterRestoreReport | undefined {
  if (!spec) return undefined;
  const outcomes = Object.values((facts[AFTER_RESTORE_FACT] ?? {}) as Record<string, AfterRestoreOutcome>);
  const manual = spec.hostedKubeconfig ? [] : [...MANUAL_CRONJOB_CHECKS, ...MANUAL_POD_CHECKS];
  for (const o of outcomes) if (o.status === 'left-undone') manual.push(...(o.manual ?? []));
  return { steps: outcomes, leftUndone: outcomes.filter((o) => o.status === 'left-undone').map((o) => o.step), manual };
}
