import { EtcdRecoverError } from '../errors.js';
import { RecoveryLock, describeHolder } from '../lock.js';
import { isVerified, type Catalog } from '../snapshot/catalog.js';
import { Journal, type JournalDoc } from './journal.js';
import { quorumSize, type ClusterObservation } from './observation.js';
import type { RecoveryPlan } from './plan.js';
import { describePointRequest, isPointInTimeRequest, type RestorePointRequest } from './restore-point.js';
import { versionsFor } from './restore-versions.js';
import type { RecoveryTarget } from './target.js';
import { refuseVersionMismatch } from './version-check.js';

/**
 * An unfinished recovery met by the next command: described in words, resumed only when the command
 * asks for the same thing and the world still allows it (checked again before anything changes), or
 * closed with --abandon (its set-aside data is kept).
 */

/** What every recovery command passes. */
export interface Common {
  target: RecoveryTarget;
  catalog: Catalog;
  /** Abandon an unfinished recovery instead of resuming it. */
  restart?: boolean;
  now?: Date;
  signal?: AbortSignal;
}

/** What an unfinished recovery is, in words: shown before anything happens. */
export function describeOpenJournal(j: Journal, now = new Date()): string {
  const d = j.doc;
  const done = d.steps.filter((s) => s.state === 'done');
  const reached = d.steps.find((s) => s.state !== 'done');
  const ageS = Math.max(0, Math.round((now.getTime() - Date.parse(d.startedAt)) / 1000));
  const rp = d.plan.restorePoint;
  const built = d.facts['restoreFrom'] ? ` (${String(d.facts['restoreFrom'])})` : '';
  const point = rp
    ? rp.kind === 'live'
      ? `live snapshot of ${rp.member}${built}`
      : rp.kind === 'point-in-time'
        ? `revision ${rp.revision} rebuilt from archive chain ${rp.pointInTime?.chain}${built}`
        : `backup ${rp.name}`
    : d.plan.member
      ? `member ${d.plan.member}`
      : 'n/a';
  return (
    `unfinished ${d.plan.kind} recovery ${d.plan.id} (${d.status}), started ${d.startedAt} (${humanAge(ageS)} ago): ` +
    `restore point ${point}${d.plan.bump ? `, revision bump ${d.plan.bump.bump}` : ''}; ${done.length}/${d.steps.length} steps done` +
    (reached ? `, next "${reached.id}"` : '') +
    (destructiveStarted(j) ? ' (data already changed)' : ' (nothing changed yet)') +
    (d.error ? `; stopped by: ${d.error.message}` : '')
  );
}

function humanAge(s: number): string {
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

/** Whether any destructive step of the journal has started (its effect may be in place). */
export function destructiveStarted(j: Journal): boolean {
  return j.doc.plan.steps.some((p) => p.destructive && j.step(p.id).state !== 'pending');
}

export async function openJournal(c: Common, kind: RecoveryPlan['kind']): Promise<Journal | undefined> {
  const open = await Journal.findOpen(c.catalog.store, c.catalog.cluster);
  if (!open) return undefined;
  if (c.restart) return undefined;
  if (open.doc.plan.kind !== kind) {
    throw new EtcdRecoverError('RESUME_CONFLICT', `${describeOpenJournal(open)} must finish first`, {
      hint:
        open.doc.plan.kind === 'auto-restore'
          ? 'the members are restoring themselves from the newest trusted backup (member-init, autoRestore): wait for every member to finish, or close it with --abandon "REASON" (its set-aside data is kept)'
          : `rerun the ${open.doc.plan.kind === 'quorum' ? '`quorum`' : `\`member replace ${open.doc.plan.member ?? ''}\``} command to resume it, or close it with --abandon "REASON" (its set-aside data is kept)`,
    });
  }
  return open;
}

/**
 * What the new command asks for that the unfinished journal does not do; empty when it asks for the
 * same thing (or leaves the choice open). Only what the command line states explicitly counts.
 */
export function resumeConflicts(plan: RecoveryPlan, facts: Record<string, unknown>, ask: { request?: RestorePointRequest; bumpOverride?: number }): string[] {
  const out: string[] = [];
  const rp = plan.restorePoint;
  const was = plan.request?.restorePoint;
  const req = ask.request;
  const restores = (p: NonNullable<typeof rp>) =>
    p.kind === 'live' ? `a live snapshot of ${p.member}` : p.kind === 'point-in-time' ? `revision ${p.revision} rebuilt from the archive` : `backup ${p.name}`;
  if (req !== undefined && rp) {
    if (isPointInTimeRequest(req)) {
      const same = rp.kind === 'point-in-time' && was !== undefined && typeof was === 'object' && JSON.stringify(was) === JSON.stringify(req);
      if (!same) out.push(`${describePointRequest(req)}, but it restores ${restores(rp)}${was !== undefined && isPointInTimeRequest(was) ? ` (asked as ${describePointRequest(was)})` : ''}`);
    } else if (typeof req === 'object') {
      const name = rp.kind === 'backup' ? rp.name : (facts['restoreFrom'] as string | undefined);
      if (rp.kind !== 'backup' || name !== req.name) out.push(`--snapshot ${req.name}, but it restores ${restores(rp)}`);
    } else if (req === 'live' && rp.kind !== 'live') {
      out.push(`--restore-point live, but it restores ${restores(rp)}`);
    } else if (req === 'latest' && (rp.kind !== 'backup' || (was !== undefined && typeof was === 'object'))) {
      out.push(`--restore-point latest, but it restores ${rp.kind === 'backup' ? `the named backup ${rp.name}` : restores(rp)}`);
    } else if (req === 'auto' && was !== undefined && was !== 'auto') {
      out.push(`--restore-point auto, but it was asked for ${typeof was === 'object' ? ('name' in was ? `--snapshot ${was.name}` : describePointRequest(was)) : `--restore-point ${was}`}`);
    }
  }
  if (ask.bumpOverride !== undefined && plan.bump && plan.bump.bump !== ask.bumpOverride) {
    out.push(`--bump-revision ${ask.bumpOverride}, but it bumps by ${plan.bump.bump}`);
  }
  return out;
}

export function refuseConflicting(open: Journal, conflicts: string[]): void {
  if (!conflicts.length) return;
  throw new EtcdRecoverError('RESUME_CONFLICT', `this command asks for something else than the ${describeOpenJournal(open)}: ${conflicts.join('; ')}`, {
    hint: 'rerun without the conflicting flags to resume it as planned, or close it first with --abandon "REASON" (its set-aside data is kept) and run the new recovery',
  });
}

/**
 * Before resuming a journal none of whose destructive steps has run, every precondition of a new run
 * is checked again: the world may have changed since it was planned (quorum back, backup gone bad).
 */
export async function recheckBeforeResume(c: Common, open: Journal, observation: ClusterObservation, force: boolean | undefined, requireSameVersion?: boolean): Promise<void> {
  if (destructiveStarted(open)) return;
  const plan = open.doc.plan;
  if (plan.kind === 'quorum') {
    // The target's etcd may have changed since (another image), or this run asks for the same release.
    const strict = Boolean(requireSameVersion || plan.request?.requireSameVersion);
    const captured = open.doc.facts['restoreFrom'] as string | undefined;
    const rec = captured ? await c.catalog.get(captured, c.signal).catch(() => undefined) : plan.restorePoint?.kind === 'backup' && plan.restorePoint.name ? await c.catalog.get(plan.restorePoint.name, c.signal).catch(() => undefined) : undefined;
    const now = await versionsFor({ target: c.target, observation, point: plan.restorePoint, record: rec, requireSame: strict, ...(c.signal ? { signal: c.signal } : {}) });
    if (now) refuseVersionMismatch(now, `${rec ? `backup ${rec.name}` : 'the restore point'} of unfinished recovery ${open.id}`, 'or close it with --abandon "REASON"');

    if (observation.quorum && !force) {
      throw new EtcdRecoverError('QUORUM_HOLDS', `quorum holds now (${observation.healthy.join(', ')} healthy); the ${describeOpenJournal(open)} was planned when it did not. Resuming would discard every write since its restore point`, {
        hint: 'close it with --abandon "quorum is back" and replace failed members with `member replace NAME`; or pass --force to restore anyway',
      });
    }
    const rp = plan.restorePoint;
    if (rp?.kind === 'backup' && rp.name) {
      const rec = await c.catalog.get(rp.name, c.signal);
      if (rec.sha256 !== rp.sha256 || (rp.verified && !isVerified(rec))) {
        throw new EtcdRecoverError('PRECONDITION', `the restore point of the ${describeOpenJournal(open)} is no longer the verified backup it planned (${rec.sha256 !== rp.sha256 ? 'its content changed' : `its last verification failed: ${rec.verification?.defects.join('; ') ?? 'unknown'}`})`, {
          hint: 'close it with --abandon "REASON" and plan again (another backup, or --snapshot NAME)',
        });
      }
    }
  } else {
    const others = observation.healthy.filter((n) => n !== plan.member);
    if (others.length < quorumSize(plan.members.length)) {
      throw new EtcdRecoverError('QUORUM_LOST', `the ${describeOpenJournal(open)} needs a quorum of other healthy members; only ${others.join(', ') || 'none'} are healthy now`, {
        hint: 'close it with --abandon "REASON" and restore the whole cluster with `kubectl etcd-recover quorum`',
      });
    }
  }
}

/** Closes an unfinished recovery without running it, recording why (its set-aside data is kept). */
export async function abandonRecovery(o: { catalog: Catalog; reason: string; by: string; signal?: AbortSignal }): Promise<JournalDoc | undefined> {
  const open = await Journal.findOpen(o.catalog.store, o.catalog.cluster);
  if (!open) return undefined;
  const lock = new RecoveryLock(o.catalog.store, o.catalog.cluster);
  const cur = await lock.read(o.signal);
  if (cur && cur.holder.recoveryId === open.id && !(await lock.holderIsGone(cur.holder, o.signal))) {
    throw new EtcdRecoverError('LOCKED', `recovery ${open.id} is running right now: ${describeHolder(cur.holder)}`, { hint: 'stop that process first (or wait for it); then --abandon' });
  }
  open.doc.status = 'abandoned';
  open.doc.abandoned = { at: new Date().toISOString(), reason: o.reason, by: o.by };
  await open.save();
  return open.doc;
}
