import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError, isEtcdRecoverError } from '../errors.js';
import { captureSnapshot } from '../snapshot/capture.js';
import type { Catalog, SnapshotRecord } from '../snapshot/catalog.js';
import { buildPointInTime, resolvePoint } from '../archive/point.js';
import { readCompanions, type CompanionOutcome } from '../snapshot/companions.js';
import { AfterRestoreSteps, afterRestoreReport, type AfterRestoreReport } from './after-restore-steps.js';
import { Journal } from './journal.js';
import { measureKeyspace } from './keyspace.js';
import type { RecoveryLock } from '../lock.js';
import type { ClusterObservation } from './observation.js';
import type { PlanStep, RecoveryPlan } from './plan.js';
import type { Keyspace, RecoveryTarget, StepContext } from './target.js';

export interface StepEvent {
  step: PlanStep;
  index: number;
  total: number;
  phase: 'start' | 'skip' | 'done';
  note?: string;
  ms?: number;
}

export interface ExecuteOptions {
  target: RecoveryTarget;
  catalog: Catalog;
  journal: Journal;
  lock: RecoveryLock;
  signal?: AbortSignal;
  onStep?: (e: StepEvent) => void;
  onMessage?: (m: string) => void;
  /** How long members may take to become healthy after a restore. Default 120 s. */
  healthyTimeoutMs?: number;
  /** How long the hosted API server may take to answer once the dependents are back. Default 300 s. */
  hostedTimeoutMs?: number;
}

export interface RecoveryReport {
  id: string;
  kind: RecoveryPlan['kind'];
  cluster: string;
  status: 'completed';
  restorePoint?: { kind: string; name?: string; revision?: number; createdAt?: string; member?: string };
  revisionBefore?: number;
  revisionAfter: number;
  /** The etcd cluster ID after the recovery (a full restore creates a new one). */
  clusterId?: string;
  bump?: number;
  keys: number;
  members: { name: string; revision: number; hashKV?: number; isLeader: boolean }[];
  rtoMs: number;
  loss?: RecoveryPlan['loss'];
  oldData: Record<string, string>;
  resumed: boolean;
  /** The snapshot's and the target's etcd versions, as planned. */
  versions?: RecoveryPlan['versions'];
  /** The plan's warnings (e.g. a different etcd patch level), repeated for the record. */
  warnings?: string[];
  /** The backup of the restored cluster taken as the restore's last step (quorum restores). */
  backupAfter?: { name: string; revision: number };
  /** What `--restore-companions` did with each saved Secret/ConfigMap. */
  companions?: CompanionOutcome[];
  /**
   * After the restore (Kubernetes): the CronJobs repaired, the stuck pods reported or deleted, the
   * Deployments rolled out; what was left undone and what to check by hand.
   */
  afterRestore?: AfterRestoreReport;
}

interface StepImpl {
  holds(ctx: StepContext): Promise<boolean>;
  /** May return a note the journal keeps for the step (e.g. "left undone: …"). */
  run(ctx: StepContext): Promise<void | string>;
}

/** Step kinds whose consecutive steps are independent (one per member) and run concurrently. */
const PARALLEL_KINDS: ReadonlySet<PlanStep['kind']> = new Set(['set-aside', 'restore-member']);

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

/** Rebuilds a point of a chain in this process (the sandbox; a target without Jobs for it) into the catalog. */
export async function buildPointInTimeLocally(catalog: Catalog, chain: string, revision: number, labels: Record<string, string>, ctx: StepContext): Promise<SnapshotRecord> {
  const point = await resolvePoint(catalog, { revision }, ctx.signal);
  if (point.chain.record.chain !== chain) {
    throw new EtcdRecoverError('PRECONDITION', `revision ${revision} is now restored from chain ${point.chain.record.chain}, not ${chain} as planned`, { hint: 'close this recovery with --abandon "REASON" and plan again' });
  }
  const built = await buildPointInTime({ catalog, point, labels, ...(ctx.signal ? { signal: ctx.signal } : {}), progress: ctx.progress });
  return built.record;
}

async function restoreRecord(plan: RecoveryPlan, catalog: Catalog, ctx: StepContext): Promise<SnapshotRecord> {
  const name = (ctx.facts['restoreFrom'] as string | undefined) ?? plan.restorePoint?.name;
  if (!name) throw new EtcdRecoverError('INTERNAL', 'the restore point has no backup name yet (capture-live did not run)');
  return catalog.get(name, ctx.signal);
}

function stepImpls(plan: RecoveryPlan, target: RecoveryTarget, catalog: Catalog, o: ExecuteOptions): (s: PlanStep) => StepImpl {
  const all = plan.members.map((m) => m.name);
  const spec = (name: string) => plan.members.find((m) => m.name === name)!;
  const healthyTimeout = o.healthyTimeoutMs ?? 120_000;
  const after = plan.afterRestore ? new AfterRestoreSteps(plan.afterRestore, target, o.hostedTimeoutMs ?? 300_000) : undefined;
  return (s) => {
    switch (s.kind) {
      case 'repair-cronjobs':
      case 'stuck-pods':
      case 'rollout':
        // Observed afresh each run (a rollout asks the Deployment whether this recovery restarted it).
        return { holds: async () => false, run: (ctx) => after!.run(s, ctx) };
      case 'restore-companions':
        return {
          // Idempotent: a rerun finds what it created "same".
          holds: async () => false,
          run: async (ctx) => {
            const c = plan.companions!;
            if (!target.restoreCompanions) throw new EtcdRecoverError('USAGE', `${target.describe()} has no companion resources to restore`);
            const bundle = await readCompanions(catalog, await catalog.get(c.from, ctx.signal), ctx.signal);
            const outcomes = await target.restoreCompanions(bundle, { overwrite: c.overwrite, backup: c.from }, ctx);
            for (const x of outcomes) ctx.progress(`${x.kind} ${x.name}: ${x.action}${x.action === 'differs' ? ' (kept as it is; --overwrite-companions replaces it)' : ''}`);
            ctx.facts['companions'] = outcomes;
          },
        };
      case 'capture-live':
        return {
          holds: async (ctx) => typeof ctx.facts['restoreFrom'] === 'string',
          run: async (ctx) => {
            const labels = { reason: 'pre-restore', recovery: plan.id };
            if (target.captureLive) {
              const name = await target.captureLive(plan.restorePoint!.member!, labels, ctx);
              const rec = await catalog.get(name, ctx.signal);
              ctx.facts['restoreFrom'] = rec.name;
              ctx.progress(`captured ${rec.name} at revision ${rec.revision} (${rec.totalKeys} keys)`);
              return;
            }
            const member = spec(plan.restorePoint!.member!);
            const rec = await captureSnapshot({
              gateway: target.gateway(),
              catalog,
              member: member.clientURL,
              allowNoLeader: true,
              labels,
              ...(ctx.signal ? { signal: ctx.signal } : {}),
              onProgress: (p) => p.message && ctx.progress(p.message),
            });
            ctx.facts['restoreFrom'] = rec.name;
            ctx.progress(`captured ${rec.name} at revision ${rec.revision} (${rec.totalKeys} keys)`);
          },
        };
      case 'build-point-in-time':
        return {
          holds: async (ctx) => typeof ctx.facts['restoreFrom'] === 'string',
          run: async (ctx) => {
            const rp = plan.restorePoint!;
            const p = rp.pointInTime!;
            const labels = { recovery: plan.id };
            const name = target.buildPointInTime
              ? await target.buildPointInTime({ chain: p.chain, revision: rp.revision! }, labels, ctx)
              : (await buildPointInTimeLocally(catalog, p.chain, rp.revision!, labels, ctx)).name;
            const rec = await catalog.get(name, ctx.signal);
            ctx.facts['restoreFrom'] = rec.name;
            ctx.progress(`built ${rec.name}: revision ${rec.revision} (${rec.totalKeys} keys) from chain ${p.chain}`);
          },
        };
      case 'stage-snapshot':
        return {
          holds: async (ctx) => target.isStaged(await restoreRecord(plan, catalog, ctx), ctx),
          run: async (ctx) => {
            const rec = await restoreRecord(plan, catalog, ctx);
            try {
              await target.stageSnapshot(rec, ctx);
            } catch (e) {
              // Remember the failure in the catalog so that "latest verified" never picks it again.
              if (isEtcdRecoverError(e) && e.code === 'SNAPSHOT_CORRUPT') {
                await catalog
                  .writeRecord({ ...rec, verification: { ok: false, at: new Date().toISOString(), by: 'restore', sha256: '', hash: 0, revision: 0, totalKeys: 0, defects: [e.message] } })
                  .catch(() => undefined);
              }
              throw e;
            }
          },
        };
      case 'check-space':
        return {
          holds: async () => false,
          run: async (ctx) => {
            if (target.checkSpace) await target.checkSpace(all, await restoreRecord(plan, catalog, ctx), ctx);
          },
        };
      case 'quiesce':
        return { holds: (ctx) => target.isQuiesced(ctx), run: (ctx) => target.quiesce(ctx) };
      case 'resume':
        return { holds: (ctx) => target.isResumed(ctx), run: (ctx) => target.resume(ctx) };
      case 'stop-members': {
        const names = s.member ? [s.member] : all;
        return { holds: (ctx) => target.areStopped(names, ctx), run: (ctx) => target.stopMembers(names, ctx) };
      }
      case 'set-aside':
        return { holds: (ctx) => target.isSetAside(s.member!, ctx), run: (ctx) => target.setAside(s.member!, ctx) };
      case 'restore-member':
        return {
          holds: (ctx) => target.isRestored(s.member!, ctx),
          run: async (ctx) =>
            target.restoreMember(s.member!, await restoreRecord(plan, catalog, ctx), { members: plan.members, token: plan.token!, bump: plan.bump!.bump }, ctx),
        };
      case 'start-members':
        return {
          holds: (ctx) => target.areStarted(all, ctx),
          run: (ctx) => target.startMembers(all, { initialState: 'new' }, ctx),
        };
      case 'wait-healthy':
        return {
          holds: async (ctx) => allHealthy(await target.observe(ctx.signal), all),
          run: async (ctx) => {
            // A member that died since it was started (a rerun after a fix) is started again.
            const down = [];
            for (const n of all) if (!(await target.areStarted([n], ctx))) down.push(n);
            if (down.length) await target.startMembers(down, { initialState: 'new' }, ctx);
            await waitHealthy(target, all, healthyTimeout, ctx);
          },
        };
      case 'verify-restored':
        return { holds: async () => false, run: async (ctx) => verifyRestored(plan, target, catalog, ctx) };
      case 'backup-restored':
        return {
          holds: async (ctx) => ctx.facts['backupAfter'] !== undefined,
          run: async (ctx) => backupRestored(plan, target, catalog, ctx),
        };
      case 'remove-member':
        return {
          holds: async (ctx) => !(await findMember(target, spec(s.member!).peerURL, ctx)),
          run: async (ctx) => {
            const m = await findMember(target, spec(s.member!).peerURL, ctx);
            if (m) {
              await retrying(healthyTimeout, ctx, () => target.gateway().remove(m.id, ctx.signal));
              ctx.progress(`removed member ${m.id} (${s.member})`);
            }
          },
        };
      case 'add-learner':
        return {
          holds: async (ctx) => Boolean(await findMember(target, spec(s.member!).peerURL, ctx)),
          run: async (ctx) => {
            const added = await retrying(healthyTimeout, ctx, () => target.gateway().add([spec(s.member!).peerURL], { learner: true }, ctx.signal));
            ctx.facts['newMemberId'] = added.id;
            ctx.progress(`added ${s.member} as learner ${added.id}`);
          },
        };
      case 'start-member':
        return {
          holds: (ctx) => target.areStarted([s.member!], ctx),
          run: async (ctx) => {
            const list = await target.gateway().list(ctx.signal);
            const initialCluster = list.members
              .map((m) => `${m.name || plan.members.find((p) => m.peerURLs.includes(p.peerURL))?.name || s.member}=${m.peerURLs[0]}`)
              .join(',');
            await target.startMembers([s.member!], { initialState: 'existing', initialCluster }, ctx);
          },
        };
      case 'promote':
        return {
          holds: async (ctx) => {
            const m = await findMember(target, spec(s.member!).peerURL, ctx);
            return Boolean(m && !m.isLearner);
          },
          run: async (ctx) => {
            await retrying(healthyTimeout, ctx, async () => {
              const m = await findMember(target, spec(s.member!).peerURL, ctx);
              if (!m) throw new EtcdRecoverError('STEP_FAILED', `${s.member} vanished from the membership before promotion`);
              await target.gateway().promote(m.id, ctx.signal);
            });
            ctx.progress(`promoted ${s.member} to voting member`);
          },
        };
    }
  };
}

/** Retries fn while it fails with a retryable error (etcd "not in sync yet", "unhealthy cluster"), until the deadline. */
async function retrying<T>(timeoutMs: number, ctx: StepContext, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await fn();
    } catch (e) {
      if (!(isEtcdRecoverError(e) && e.retryable) || Date.now() > deadline) throw e;
      await sleep(delay, undefined, ctx.signal ? { signal: ctx.signal } : undefined);
    }
  }
}

async function findMember(target: RecoveryTarget, peerURL: string, ctx: StepContext) {
  const list = await target.gateway().list(ctx.signal);
  return list.members.find((m) => m.peerURLs.includes(peerURL));
}

/** Steps whose effect a later event can undo without touching data (a member that died): a resume checks them again. */
const RECHECKED_ON_RESUME = new Set<PlanStep['kind']>(['wait-healthy']);

function allHealthy(o: ClusterObservation, names: string[]): boolean {
  return names.every((n) => o.healthy.includes(n)) && Boolean(o.leader);
}

async function waitHealthy(target: RecoveryTarget, names: string[], timeoutMs: number, ctx: StepContext): Promise<ClusterObservation> {
  const deadline = Date.now() + timeoutMs;
  let last: ClusterObservation | undefined;
  for (;;) {
    last = await target.observe(ctx.signal);
    if (allHealthy(last, names)) return last;
    if (Date.now() > deadline) {
      const bad = last.members.filter((m) => !last!.healthy.includes(m.name));
      const why = (m: (typeof bad)[number]) => {
        const d = m.running ? undefined : target.diagnose?.(m.name);
        return d ? `exited: ${d}` : (m.error ?? (m.running ? 'no leader' : 'not running'));
      };
      throw new EtcdRecoverError('STEP_FAILED', `member(s) ${bad.map((m) => `${m.name} (${why(m)})`).join(', ')} did not become healthy within ${Math.round(timeoutMs / 1000)} s`, {
        hint: 'read the member logs; old data is set aside and can be rolled back',
      });
    }
    await sleep(250, undefined, ctx.signal ? { signal: ctx.signal } : undefined);
  }
}

/** Key count and per-member HashKV, through the target (Kubernetes: a Job) or the gateway. */
async function keyspace(target: RecoveryTarget, ctx: StepContext, countAt?: number): Promise<Keyspace> {
  return target.keyspace ? target.keyspace(ctx, countAt) : measureKeyspace(target.gateway(), target.members(), ctx.signal, countAt);
}

async function verifyRestored(plan: RecoveryPlan, target: RecoveryTarget, catalog: Catalog, ctx: StepContext): Promise<void> {
  const rec = plan.kind === 'quorum' ? await restoreRecord(plan, catalog, ctx) : undefined;
  // The keys are counted at the restored revision (snapshot + bump): what the restore wrote, whatever
  // happened since (a lease expiring, a client writing).
  const floor = rec ? rec.revision + plan.bump!.bump : undefined;
  const ks = await keyspace(target, ctx, floor).catch((e: unknown) => {
    // A member that does not answer: say why when the target knows (the member's last log error).
    const why = target.members().map((m) => ({ m: m.name, d: target.diagnose?.(m.name) })).filter((x) => x.d);
    if (!why.length || !(e instanceof EtcdRecoverError)) throw e;
    throw new EtcdRecoverError(e.code, `${e.message} (${why.map((x) => `${x.m} exited: ${x.d}`).join('; ')})`, { cause: e, ...(e.hint ? { hint: e.hint } : {}) });
  });
  if (rec && floor !== undefined) {
    for (const m of ks.members) {
      if (m.revision < floor) {
        throw new EtcdRecoverError('STEP_FAILED', `restored member ${m.name} is at revision ${m.revision}, below the expected ${floor} (snapshot ${rec.revision} + bump ${plan.bump!.bump})`);
      }
    }
    const expected = rec.userKeys ?? rec.totalKeys;
    if (ks.keys !== expected && rec.compactionPending) {
      // The snapshot was taken mid-compaction: its key count is an estimate, etcd's count is the
      // truth. The members' identical HashKV and the revision floor still prove the restore.
      ctx.progress(`the restored cluster holds ${ks.keys} keys; snapshot ${rec.name} was taken while a compaction was pending, so its count (${expected}) is approximate`);
    } else if (ks.keys !== expected) {
      throw new EtcdRecoverError('STEP_FAILED', `the restored cluster held ${ks.keys} keys at revision ${floor} but snapshot ${rec.name} has ${expected}`);
    }
    ctx.facts['restoredKeys'] = ks.keys;
  }
  // Every member must hold the same keyspace: compare HashKV at one revision.
  const hashes = ks.members;
  if (new Set(hashes.map((h) => h.hash)).size !== 1) {
    throw new EtcdRecoverError('STEP_FAILED', `members disagree on the keyspace at revision ${ks.revision}: ${hashes.map((h) => `${h.name}=${h.hash}`).join(', ')}`);
  }
  ctx.facts['hashKV'] = { revision: ks.revision, hash: hashes[0]!.hash };
  ctx.facts['keys'] = ks.keys;
  if (ks.clusterId) ctx.facts['clusterId'] = ks.clusterId;
  ctx.progress(`all ${hashes.length} members hold the same keyspace (hashKV ${hashes[0]!.hash} at revision ${ks.revision})`);
}

/**
 * The backup of the restored cluster, judged against the backup it was restored from (a rollback to
 * fewer keys is what was asked for, not a collapse). Its failure does not undo a verified restore:
 * it is reported, with the command that takes it, in the step's note and the report's warnings.
 */
async function backupRestored(plan: RecoveryPlan, target: RecoveryTarget, catalog: Catalog, ctx: StepContext): Promise<string | undefined> {
  const from = (ctx.facts['restoreFrom'] as string | undefined) ?? plan.restorePoint?.name;
  const labels = { reason: 'post-recovery', recovery: plan.id, ...(from ? { 'restored-from': from } : {}) };
  try {
    // A run that died after the backup and before the journal said so: that backup is the one.
    const earlier = (await catalog.list(ctx.signal)).snapshots.find((r) => r.labels?.['recovery'] === plan.id && r.labels?.['reason'] === 'post-recovery');
    const name = earlier
      ? earlier.name
      : target.captureLive
        ? await target.captureLive(plan.members[0]!.name, labels, ctx)
        : (
          await captureSnapshot({
            gateway: target.gateway(),
            catalog,
            labels,
            ...(ctx.signal ? { signal: ctx.signal } : {}),
            onProgress: (p) => p.message && ctx.progress(p.message),
          })
        ).name;
    const rec = await catalog.get(name, ctx.signal);
    ctx.facts['backupAfter'] = { name: rec.name, revision: rec.revision };
    ctx.progress(`backed up the restored cluster: ${rec.name} at revision ${rec.revision} (${rec.userKeys ?? rec.totalKeys} keys)${rec.suspect ? '; SUSPECT: ' + rec.suspect.reasons.join('; ') : ''}`);
    return undefined;
  } catch (e) {
    if (ctx.signal?.aborted) throw e;
    const message = (e as Error).message;
    ctx.facts['backupAfter'] = { error: message };
    ctx.progress(`WARNING: the backup of the restored cluster failed: ${message}`);
    return `not taken (${message}): take one now with \`kubectl etcd-recover backup create\``;
  }
}

/** What the report says of the backup after the restore: its name, or why there is none and what to do. */
function backupAfterReport(facts: Record<string, unknown>): { backupAfter?: { name: string; revision: number }; warning?: string } {
  const b = facts['backupAfter'] as { name?: string; revision?: number; error?: string } | undefined;
  if (!b) return {};
  if (b.name) return { backupAfter: { name: b.name, revision: b.revision ?? 0 } };
  return {
    warning: `no backup of the restored cluster was taken (${b.error}): until one is, the newest backup is the data from before this recovery; take one now with \`kubectl etcd-recover backup create\``,
  };
}

async function finalReport(plan: RecoveryPlan, journal: Journal, target: RecoveryTarget, resumed: boolean): Promise<RecoveryReport> {
  const o = await target.observe();
  const clusterId = o.clusterId ?? (journal.doc.facts['clusterId'] as string | undefined);
  const keys = (journal.doc.facts['restoredKeys'] as number | undefined) ?? (journal.doc.facts['keys'] as number | undefined) ?? (await target.gateway().kv.count(''));
  const hk = journal.doc.facts['hashKV'] as { hash: number } | undefined;
  const rp = plan.restorePoint;
  const name = (journal.doc.facts['restoreFrom'] as string | undefined) ?? rp?.name;
  const after = backupAfterReport(journal.doc.facts);
  const warnings = [...plan.warnings, ...(after.warning ? [after.warning] : [])];
  return {
    id: plan.id,
    kind: plan.kind,
    cluster: plan.cluster,
    status: 'completed',
    ...(rp
      ? {
          restorePoint: {
            kind: rp.kind,
            ...(name ? { name } : {}),
            ...(rp.member ? { member: rp.member } : {}),
            ...(rp.revision !== undefined ? { revision: rp.revision } : {}),
            ...(rp.createdAt ? { createdAt: rp.createdAt } : {}),
          },
        }
      : {}),
    ...(plan.observed.maxRevision !== undefined ? { revisionBefore: plan.observed.maxRevision } : {}),
    revisionAfter: o.maxRevision ?? 0,
    ...(clusterId ? { clusterId } : {}),
    ...(plan.bump ? { bump: plan.bump.bump } : {}),
    keys,
    members: o.members.map((m) => ({ name: m.name, revision: m.status?.revision ?? 0, ...(hk ? { hashKV: hk.hash } : {}), isLeader: m.name === o.leader })),
    rtoMs: Date.now() - Date.parse(journal.doc.startedAt),
    ...(plan.loss ? { loss: plan.loss } : {}),
    oldData: Object.fromEntries(
      plan.members.filter((m) => plan.kind === 'quorum' || m.name === plan.member).map((m) => [m.name, target.asideLocation(m.name, plan.id)]),
    ),
    resumed,
    ...(plan.versions ? { versions: plan.versions } : {}),
    ...(after.backupAfter ? { backupAfter: after.backupAfter } : {}),
    ...(warnings.length ? { warnings } : {}),
    ...(journal.doc.facts['companions'] ? { companions: journal.doc.facts['companions'] as CompanionOutcome[] } : {}),
    ...(plan.afterRestore ? { afterRestore: afterRestoreReport(plan.afterRestore, journal.doc.facts)! } : {}),
  };
}
