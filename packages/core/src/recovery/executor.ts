import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError, isEtcdRecoverError } from '../errors.js';
import type { Catalog } from '../snapshot/catalog.js';
import { Journal } from './journal.js';
import type { RecoveryLock } from '../lock.js';
import type { PlanStep } from './plan.js';
import { finalReport, type RecoveryReport } from './recovery-report.js';
import { stepImpls, type StepTimeouts } from './steps.js';
import type { RecoveryTarget, StepContext } from './target.js';

export type { RecoveryReport } from './recovery-report.js';
export { buildPointInTimeLocally } from './steps.js';

export interface StepEvent {
  step: PlanStep;
  index: number;
  total: number;
  phase: 'start' | 'skip' | 'done';
  note?: string;
  ms?: number;
}

export interface ExecuteOptions extends StepTimeouts {
  target: RecoveryTarget;
  catalog: Catalog;
  journal: Journal;
  lock: RecoveryLock;
  signal?: AbortSignal;
  onStep?: (e: StepEvent) => void;
  onMessage?: (m: string) => void;
}

/** Step kinds whose consecutive steps are independent (one per member) and run concurrently. */
const PARALLEL_KINDS: ReadonlySet<PlanStep['kind']> = new Set(['set-aside', 'restore-member']);

/** Steps whose effect a later event can undo without touching data (a member that died): a resume checks them again. */
const RECHECKED_ON_RESUME = new Set<PlanStep['kind']>(['wait-healthy']);

/** Test-only fault injection: die right after a step's effect, before the journal records it. */
const FAULT_ENV = 'ETCD_RECOVER_FAULT_AFTER_STEP';
/** Test-only fault injection (ETCD_RECOVER_FAULT_AFTER_STEP): dies right after a step's effect, before the journal records it. */
export function faultAfterStep(step: string): void {
  if (process.env[FAULT_ENV] === step) process.kill(process.pid, 'SIGKILL');
}
/** Test-only fault injection: `step:ms` pauses after that step is journaled (room to freeze the process). */
const PAUSE_ENV = 'ETCD_RECOVER_FAULT_PAUSE_AFTER_STEP';

/**
 * Runs a recovery plan step by step. Before each step it asks whether the
 * step's effect already holds (a rerun after a crash skips it); after each
 * step it writes the journal. A failure leaves the journal `failed` and the
 * lock held, so the same command resumes.
 */
export async function executePlan(o: ExecuteOptions): Promise<RecoveryReport> {
  const { journal, target, catalog } = o;
  const plan = journal.doc.plan;
  const resumed = journal.doc.runs.length > 0;
  // A run that lost the lock must not overwrite the journal the new holder is now writing.
  journal.writable = () => o.lock.held;
  journal.doc.runs.push({ host: (await import('node:os')).hostname(), pid: process.pid, startedAt: new Date().toISOString(), runId: o.lock.runId });
  journal.doc.status = 'running';
  delete journal.doc.error;
  await journal.save();

  const ctx: StepContext = {
    recoveryId: plan.id,
    catalog,
    ...(o.signal ? { signal: o.signal } : {}),
    progress: (m) => o.onMessage?.(m),
    facts: journal.doc.facts,
  };
  const impls = stepImpls(plan, target, catalog, o);

  const runStep = async (step: PlanStep, index: number): Promise<void> => {
    o.signal?.throwIfAborted();
    const rec = journal.step(step.id);
    const event = { step, index, total: plan.steps.length };
    const impl = impls(step);
    if (rec.state === 'done') {
      // A member that died after an earlier run saw the cluster healthy would fail every later step
      // of every rerun: a resume checks the cluster is still healthy and, if not, waits again (which
      // starts a member that is down) instead of skipping on the journal's word.
      if (resumed && RECHECKED_ON_RESUME.has(step.kind) && !(await impl.holds(ctx))) {
        o.onMessage?.(`${step.title}: done in an earlier run, but no longer so; doing it again`);
        rec.state = 'failed';
      } else {
        o.onStep?.({ ...event, phase: 'skip', note: 'done in an earlier run' });
        return;
      }
    }
    if (rec.state !== 'pending' && (await impl.holds(ctx))) {
      // Crashed after the effect but before the journal said so.
      rec.state = 'done';
      rec.note = 'effect already in place';
      rec.finishedAt = new Date().toISOString();
      await journal.save();
      o.onStep?.({ ...event, phase: 'skip', note: rec.note });
      return;
    }
    // Fencing: a destructive step starts only while this run provably still holds the lock.
    if (step.destructive) await o.lock.fence(o.signal);
    o.onStep?.({ ...event, phase: 'start' });
    const t0 = performance.now();
    rec.state = 'running';
    rec.attempts++;
    rec.startedAt = new Date().toISOString();
    await journal.save();
    const note = (await impl.holds(ctx)) ? undefined : await impl.run(ctx);
    faultAfterStep(step.id);
    rec.state = 'done';
    rec.finishedAt = new Date().toISOString();
    if (note) rec.note = note;
    delete rec.error;
    await journal.save();
    o.onStep?.({ ...event, phase: 'done', ms: performance.now() - t0, ...(note ? { note } : {}) });
    const pause = process.env[PAUSE_ENV]?.split(':');
    if (pause?.[0] === step.id) {
      o.onMessage?.(`fault injection: pausing ${pause[1]} ms after ${step.id}`);
      await sleep(Number(pause[1]));
    }
  };

  try {
    // Consecutive steps of a parallel kind (one member's restore each) run together.
    for (let i = 0; i < plan.steps.length; ) {
      const step = plan.steps[i]!;
      let j = i + 1;
      if (PARALLEL_KINDS.has(step.kind)) while (j < plan.steps.length && plan.steps[j]!.kind === step.kind) j++;
      const group = plan.steps.slice(i, j);
      const results = await Promise.allSettled(group.map((s, k) => runStep(s, i + k)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      i = j;
    }
  } catch (e) {
    const err = isEtcdRecoverError(e) ? e : new EtcdRecoverError('STEP_FAILED', (e as Error).message, { cause: e });
    const running = journal.doc.steps.find((s) => s.state === 'running');
    if (running) {
      running.state = 'failed';
      running.error = err.message;
    }
    journal.doc.status = 'failed';
    journal.doc.error = { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
    await journal.save().catch(() => undefined);
    o.lock.detach();
    const aside = plan.members.filter((m) => journal.doc.steps.some((s) => s.id === `set-aside:${m.name}` && s.state === 'done'));
    const asideNote = aside.length ? ` Old data is kept at: ${aside.map((m) => target.asideLocation(m.name, plan.id)).join(', ')}.` : '';
    throw new EtcdRecoverError(err.code === 'ABORTED' ? 'ABORTED' : err.code, `${plan.kind} recovery ${plan.id} stopped at step "${running?.id ?? '?'}": ${err.message}.${asideNote}`, {
      cause: e,
      hint: `fix the cause and rerun the same command to resume (the journal is at ${Journal.key(plan.cluster, plan.id)}); see docs/runbooks/rollback.md to roll back`,
    });
  }

  const report = await finalReport(plan, journal, target, resumed);
  journal.doc.status = 'completed';
  journal.doc.finishedAt = new Date().toISOString();
  journal.doc.facts['report'] = report;
  await journal.save();
  await o.lock.release();
  return report;
}
