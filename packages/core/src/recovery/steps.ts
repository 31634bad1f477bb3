import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError, isEtcdRecoverError } from '../errors.js';
import { captureSnapshot } from '../snapshot/capture.js';
import type { Catalog, SnapshotRecord } from '../snapshot/catalog.js';
import { buildPointInTime, resolvePoint } from '../archive/point.js';
import { readCompanions } from '../snapshot/companions.js';
import { AfterRestoreSteps } from './after-restore-steps.js';
import type { ClusterObservation } from './observation.js';
import type { PlanStep, RecoveryPlan } from './plan.js';
import { backupRestored, restoreRecord, verifyRestored } from './restored-checks.js';
import type { RecoveryTarget, StepContext } from './target.js';

/** What one plan step does, and how a rerun tells that its effect already holds. */
export interface StepImpl {
  holds(ctx: StepContext): Promise<boolean>;
  /** May return a note the journal keeps for the step (e.g. "left undone: …"). */
  run(ctx: StepContext): Promise<void | string>;
}

/** The timeouts the steps wait with. */
export interface StepTimeouts {
  /** How long members may take to become healthy after a restore. Default 120 s. */
  healthyTimeoutMs?: number;
  /** How long the hosted API server may take to answer once the dependents are back. Default 300 s. */
  hostedTimeoutMs?: number;
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

/**
 * Each plan step's effect and its check, by kind: what the executor runs, and asks before running
 * (a step whose effect already holds is skipped, so a rerun after a crash resumes where it was).
 */
export function stepImpls(plan: RecoveryPlan, target: RecoveryTarget, catalog: Catalog, o: StepTimeouts): (s: PlanStep) => StepImpl {
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

/** Whether every named member is healthy and the cluster has a leader. */
export function allHealthy(o: ClusterObservation, names: string[]): boolean {
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
