import { randomBytes } from 'node:crypto';
import { EtcdRecoverError, isEtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { listChains } from '../archive/chains.js';
import { readJson } from '../store/object-store.js';
import { isTrusted, isVerified, type Catalog, type SnapshotRecord } from '../snapshot/catalog.js';
import { executePlan, type RecoveryReport, type StepEvent } from './executor.js';
import { Journal, type JournalDoc } from './journal.js';
import { RecoveryLock, describeHolder, lockedError } from '../lock.js';
import { quorumSize, type ClusterObservation } from './observation.js';
import { newRecoveryId, planMemberReplace, planQuorumRestore, type PlanAfterRestore, type PlanCompanions, type RecoveryPlan, type RestorePoint } from './plan.js';
import { describePointRequest, isPointInTimeRequest, newestArchived, resolvePointInTime, resolveRestorePoint, type PointInTimeRequest, type RestorePointRequest } from './restore-point.js';
import { computeRevisionBump, writeRate } from './revision-bump.js';
import type { RecoveryTarget, TargetEtcdVersion } from './target.js';
import { checkEtcdVersions, compareEtcdVersions, planVersions, refuseVersionMismatch, type PlanVersions, type SnapshotVersionEvidence } from './version-check.js';

export interface Prepared {
  plan: RecoveryPlan;
  /** Set when an unfinished recovery of the same kind exists: running the plan resumes it. */
  resume?: Journal;
  observation: ClusterObservation;
}

interface Common {
  target: RecoveryTarget;
  catalog: Catalog;
  /** Abandon an unfinished recovery instead of resuming it. */
  restart?: boolean;
  now?: Date;
  signal?: AbortSignal;
}

async function refuseIfLocked(c: Common): Promise<void> {
  const lock = new RecoveryLock(c.catalog.store, c.catalog.cluster);
  const cur = await lock.read(c.signal);
  if (cur && !(await lock.holderIsGone(cur.holder, c.signal))) {
    throw lockedError(c.catalog.cluster, cur.holder, 'wait for it to finish (its journal shows progress)');
  }
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

async function openJournal(c: Common, kind: RecoveryPlan['kind']): Promise<Journal | undefined> {
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

function refuseConflicting(open: Journal, conflicts: string[]): void {
  if (!conflicts.length) return;
  throw new EtcdRecoverError('RESUME_CONFLICT', `this command asks for something else than the ${describeOpenJournal(open)}: ${conflicts.join('; ')}`, {
    hint: 'rerun without the conflicting flags to resume it as planned, or close it first with --abandon "REASON" (its set-aside data is kept) and run the new recovery',
  });
}

/**
 * Before resuming a journal none of whose destructive steps has run, every precondition of a new run
 * is checked again: the world may have changed since it was planned (quorum back, backup gone bad).
 */
async function recheckBeforeResume(c: Common, open: Journal, observation: ClusterObservation, force: boolean | undefined, requireSameVersion?: boolean): Promise<void> {
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

/**
 * What this cluster's bucket remembers: the etcd cluster IDs its recoveries
 * saw (restores change it) and the highest revision any backup or recovery saw,
 * so that a restore when every member is gone still bumps past it.
 */
export async function bucketHistory(c: { catalog: Catalog; signal?: AbortSignal }): Promise<{ clusterIds: string[]; maxRevision?: number }> {
  const ids = new Set<string>();
  let maxRevision: number | undefined;
  const seen = (r: number | undefined) => {
    if (r !== undefined && (maxRevision === undefined || r > maxRevision)) maxRevision = r;
  };
  for (const s of (await c.catalog.list(c.signal)).snapshots) seen(s.revision);
  for await (const o of c.catalog.store.list(layout.recoveriesPrefix(c.catalog.cluster), c.signal)) {
    const j = await readJson<JournalDoc>(c.catalog.store, o.key, c.signal).catch(() => undefined);
    const p = j?.value.plan;
    if (p?.observed.clusterId) ids.add(p.observed.clusterId);
    if (p?.restorePoint?.clusterId) ids.add(p.restorePoint.clusterId);
    seen(p?.observed.maxRevision);
    const report = j?.value.facts['report'] as { revisionAfter?: number; clusterId?: string } | undefined;
    seen(report?.revisionAfter);
    if (report?.clusterId) ids.add(report.clusterId);
  }
  return { clusterIds: [...ids], ...(maxRevision !== undefined ? { maxRevision } : {}) };
}

export interface QuorumOptions extends Common {
  /** What the command line asked for; undefined leaves it open (a new plan takes 'auto'). */
  request?: RestorePointRequest;
  bumpOverride?: number;
  allowForeign?: boolean;
  /** Restore even though quorum holds (also checked again before resuming an untouched journal). */
  force?: boolean;
  /**
   * OKD's rule: restore only with the etcd release that took the snapshot (any difference in
   * major.minor.patch, or a version unknown on either side, refuses). Without it a newer minor refuses
   * and any other difference warns.
   */
  requireSameVersion?: boolean;
  /** Recreate the companion resources saved with the restore point (or the newest trusted backup that has them) first. */
  restoreCompanions?: { overwrite: boolean };
  /** After the restore, delete the hosted cluster's stuck pods (`--yes`) instead of only reporting them. */
  deleteStuckPods?: boolean;
}

/** Observes the cluster and builds the quorum-restore plan (or finds the one to resume). Changes nothing. */
export async function prepareQuorum(o: QuorumOptions): Promise<Prepared> {
  await refuseIfLocked(o);
  const observation = await o.target.observe(o.signal);
  const open = await openJournal(o, 'quorum');
  if (open) {
    refuseConflicting(open, resumeConflicts(open.doc.plan, open.doc.facts, o));
    await recheckBeforeResume(o, open, observation, o.force, o.requireSameVersion);
    return { plan: open.doc.plan, resume: open, observation };
  }
  const now = o.now ?? new Date();
  const past = await bucketHistory(o);
  const request = o.request ?? 'auto';
  // The archive's chains, listed once: the newest archived revision (for auto) and the highest one (for the bump).
  const chains = await listChains(o.catalog.store, o.catalog.cluster, o.signal).catch(() => []);
  let chosen = isPointInTimeRequest(request)
    ? await pointInTimeRestorePoint(o.catalog, request, o.signal)
    : await resolveRestorePoint({
        catalog: o.catalog,
        observation,
        request,
        ...(o.allowForeign ? { allowForeign: true } : {}),
        lineage: past.clusterIds,
        ...(o.signal ? { signal: o.signal } : {}),
      }).catch(async (e) => {
        // No backup or survivor to restore from, but perhaps an archive: auto looks there too.
        if (request !== 'auto' || !isEtcdRecoverError(e) || e.code !== 'NO_RESTORE_POINT') throw e;
        const a = await newestArchived(o.catalog, chains, { observation, lineage: past.clusterIds, ...(o.signal ? { signal: o.signal } : {}) });
        if (!a) throw e;
        return pointInTimeRestorePoint(o.catalog, { toRevision: a.revision }, o.signal);
      });
  if (request === 'auto' && chosen.point.kind !== 'point-in-time') {
    // The archive usually holds newer data than any backup, and than a survivor that fell behind.
    const a = await newestArchived(o.catalog, chains, { observation, lineage: past.clusterIds, ...(o.signal ? { signal: o.signal } : {}) });
    if (a && a.revision > (chosen.point.revision ?? 0)) {
      const was = chosen.point.kind === 'live' ? `surviving member ${chosen.point.member} (revision ${chosen.point.revision})` : `backup ${chosen.point.name} (revision ${chosen.point.revision})`;
      chosen = await pointInTimeRestorePoint(o.catalog, { toRevision: a.revision }, o.signal);
      chosen.point.reason = `the archive (chain ${a.chain}) holds revision ${a.revision}, newer than ${was}: the newest archived revision is restored`;
    }
  }
  const { point, record, backups, newestBackup } = chosen;
  // The archive's newest revision was seen by clients too: revisions must go past it (a point-in-time
  // restore to an early revision would otherwise reuse revision numbers watchers already saw).
  const archivedMax = chains.length ? Math.max(...chains.map((c) => Math.max(c.to, ...c.segments.map((x) => x.last)))) : undefined;
  const seenMax = highest(highest(observation.maxRevision, past.maxRevision), archivedMax);
  let bump;
  try {
    bump = computeRevisionBump({
      snapshotRevision: point.revision ?? 0,
      snapshotCreatedAt: point.createdAt ? new Date(point.createdAt) : now,
      now,
      ...(seenMax !== undefined ? { observedMaxRevision: seenMax } : {}),
      ...(writeRate(backups) !== undefined ? { rate: writeRate(backups)! } : {}),
      ...(o.bumpOverride !== undefined ? { override: o.bumpOverride } : {}),
    });
  } catch (e) {
    throw new EtcdRecoverError('USAGE', (e as Error).message);
  }
  const versions = await versionsFor({
    target: o.target,
    observation,
    point,
    record,
    backups,
    cluster: o.catalog.cluster,
    requireSame: Boolean(o.requireSameVersion),
    ...(o.signal ? { signal: o.signal } : {}),
  });
  let companions: PlanCompanions | undefined;
  if (o.restoreCompanions) {
    if (!o.target.restoreCompanions) {
      throw new EtcdRecoverError('USAGE', `--restore-companions: ${o.target.describe()} keeps no companion resources (they are Kubernetes Secrets and ConfigMaps)`);
    }
    const carrier = record?.companions ? record : backups.find((b) => isTrusted(b) && b.companions);
    if (!carrier?.companions) {
      throw new EtcdRecoverError('PRECONDITION', `--restore-companions: no trusted backup of ${o.catalog.cluster} carries companion resources`, {
        hint: 'declare companions on the component (they are saved with the next backup), or recreate the Secrets by hand and rerun without --restore-companions',
      });
    }
    companions = { from: carrier.name, overwrite: o.restoreCompanions.overwrite, items: carrier.companions.items };
  }
  const ar = o.target.afterRestore?.();
  const afterRestore: PlanAfterRestore | undefined = ar && { ...ar, deleteStuckPods: Boolean(o.deleteStuckPods) };
  const plan = planQuorumRestore({
    ...(companions ? { companions } : {}),
    id: newRecoveryId(now, randomBytes(2).toString('hex')),
    cluster: o.catalog.cluster,
    target: o.target.describe(),
    now,
    members: o.target.members(),
    observation,
    restorePoint: point,
    bump,
    token: `${o.catalog.cluster}-${randomBytes(4).toString('hex')}`,
    quiesce: o.target.quiesces,
    backupAfter: true,
    ...(afterRestore ? { afterRestore } : {}),
    ...(newestBackup ? { newestBackup: { name: newestBackup.name, revision: newestBackup.revision, createdAt: newestBackup.createdAt } } : {}),
    ...(versions ? { versions } : {}),
  });
  plan.request = {
    restorePoint: request,
    ...(o.bumpOverride !== undefined ? { bumpOverride: o.bumpOverride } : {}),
    ...(o.allowForeign ? { allowForeign: true } : {}),
    ...(o.requireSameVersion ? { requireSameVersion: true } : {}),
  };
  return { plan, observation };
}

/** A point-in-time restore point, with the base backup standing in as the record (its etcd version is the snapshot's evidence). */
async function pointInTimeRestorePoint(catalog: Catalog, request: PointInTimeRequest, signal?: AbortSignal) {
  const { point, base } = await resolvePointInTime(catalog, request, signal);
  const backups = (await catalog.list(signal)).snapshots;
  const newest = backups.find(isTrusted);
  return { point, record: base, backups, ...(newest ? { newestBackup: newest } : {}) };
}

export interface ReplaceOptions extends Common {
  member: string;
}

/** Builds the single-member replacement plan; refuses without quorum (that is `quorum`'s job). */
export async function prepareMemberReplace(o: ReplaceOptions): Promise<Prepared> {
  await refuseIfLocked(o);
  const observation = await o.target.observe(o.signal);
  const open = await openJournal(o, 'member-replace');
  if (open) {
    if (open.doc.plan.member !== o.member) {
      throw new EtcdRecoverError('PRECONDITION', `the ${describeOpenJournal(open)} must finish first`, {
        hint: `rerun \`member replace ${open.doc.plan.member}\` to resume it, or close it with --abandon "REASON"`,
      });
    }
    await recheckBeforeResume(o, open, observation, false);
    return { plan: open.doc.plan, resume: open, observation };
  }
  const members = o.target.members();
  if (!members.some((m) => m.name === o.member)) {
    throw new EtcdRecoverError('USAGE', `no member named ${o.member} (members: ${members.map((m) => m.name).join(', ')})`);
  }
  const others = observation.healthy.filter((n) => n !== o.member);
  if (others.length < quorumSize(members.length)) {
    throw new EtcdRecoverError('QUORUM_LOST', `replacing ${o.member} needs a quorum of ${quorumSize(members.length)} other healthy members; only ${others.length} (${others.join(', ') || 'none'}) are healthy`, {
      hint: 'restore the whole cluster with `kubectl etcd-recover quorum`',
    });
  }
  const now = o.now ?? new Date();
  const plan = planMemberReplace({
    id: newRecoveryId(now, randomBytes(2).toString('hex')),
    cluster: o.catalog.cluster,
    target: o.target.describe(),
    now,
    members,
    observation,
    member: o.member,
  });
  if (observation.healthy.includes(o.member)) plan.warnings.push(`${o.member} is healthy: replacing it lowers fault tolerance until it has caught up`);
  return { plan, observation };
}

export interface RunOptions {
  target: RecoveryTarget;
  catalog: Catalog;
  prepared: Prepared;
  command: string;
  restart?: boolean;
  signal?: AbortSignal;
  onStep?: (e: StepEvent) => void;
  onMessage?: (m: string) => void;
  healthyTimeoutMs?: number;
  hostedTimeoutMs?: number;
}

/** Takes the lock, writes (or resumes) the journal and executes the plan. */
export async function runRecovery(o: RunOptions): Promise<RecoveryReport> {
  const store = o.catalog.store;
  const lock = new RecoveryLock(store, o.catalog.cluster, {
    onLost: (why) => o.onMessage?.(`lost the recovery lock (${why}): stopping before the next destructive step`),
  });
  const { plan } = o.prepared;
  // Before the lock, the journal and any step: a restore the target's etcd cannot take never starts.
  refusePlannedVersions(plan);
  await lock.acquire(plan.id, plan.kind, o.command, o.signal);
  try {
    if (o.restart) {
      const open = await Journal.findOpen(store, o.catalog.cluster);
      if (open && open.id !== plan.id) {
        open.doc.status = 'abandoned';
        open.doc.abandoned = { at: new Date().toISOString(), reason: `replaced by a new recovery (--restart): ${o.command}`, by: o.command };
        await open.save();
        o.onMessage?.(`abandoned unfinished recovery ${open.id}; its set-aside data stays where it is`);
      }
    }
    const journal = o.prepared.resume ?? Journal.create(store, plan);
    if (o.prepared.resume) o.onMessage?.(`resuming recovery ${journal.id} started ${journal.doc.startedAt}`);
    if (plan.token) journal.doc.facts['token'] = plan.token;
    await journal.save();
    return await executePlan({
      target: o.target,
      catalog: o.catalog,
      journal,
      lock,
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onStep ? { onStep: o.onStep } : {}),
      ...(o.onMessage ? { onMessage: o.onMessage } : {}),
      ...(o.healthyTimeoutMs ? { healthyTimeoutMs: o.healthyTimeoutMs } : {}),
      ...(o.hostedTimeoutMs ? { hostedTimeoutMs: o.hostedTimeoutMs } : {}),
    });
  } catch (e) {
    // The journal (failed or running) is what a rerun resumes; the lock only guards concurrent runs.
    await lock.release().catch(() => undefined);
    throw e;
  }
}

function highest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

/** Refuses (VERSION_MISMATCH) a plan whose version check refused; callers run it before anything changes. */
export function refusePlannedVersions(plan: RecoveryPlan): void {
  const rp = plan.restorePoint;
  const what = rp ? (rp.kind === 'live' ? `a live snapshot of ${rp.member}` : rp.kind === 'point-in-time' ? `revision ${rp.revision} rebuilt from the archive` : `backup ${rp.name}`) : `the ${plan.kind} plan`;
  refuseVersionMismatch(plan.versions, what);
}

/**
 * The etcd the target will run: what the target says (etcdVersion), else the live members' reported
 * versions — the lowest when they differ (every member must read the restored data).
 */
export async function targetEtcdVersion(target: RecoveryTarget, observation: ClusterObservation, signal?: AbortSignal): Promise<TargetEtcdVersion | undefined> {
  const own = await target.etcdVersion?.(signal).catch(() => undefined);
  if (own) return own;
  const reported = observation.members.filter((m) => m.status?.version).map((m) => ({ name: m.name, version: m.status!.version }));
  if (!reported.length) return undefined;
  const lowest = [...reported].sort((a, b) => compareEtcdVersions(a.version, b.version))[0]!;
  const all = new Set(reported.map((r) => r.version));
  return {
    version: lowest.version,
    source: all.size === 1 ? `reported by the running member(s) ${reported.map((r) => r.name).join(', ')}` : `the lowest the running members report (${reported.map((r) => `${r.name} ${r.version}`).join(', ')})`,
  };
}

/** What tells the version of a restore point: its backup record, or the live member that will be snapshotted. */
export function snapshotVersionEvidence(point: RestorePoint | undefined, record: SnapshotRecord | undefined, observation?: ClusterObservation): (SnapshotVersionEvidence & { source: string }) | undefined {
  if (record) {
    return {
      ...(record.etcdVersion ? { reported: record.etcdVersion } : {}),
      ...(record.storageVersion ? { storage: record.storageVersion } : {}),
      source: `backup ${record.name}: etcdVersion ${record.etcdVersion || 'not recorded'} (reported by its source member), storageVersion ${record.storageVersion ?? 'not recorded'} (from the snapshot's bbolt meta)`,
    };
  }
  if (point?.kind === 'live' && point.member) {
    const v = observation?.members.find((m) => m.name === point.member)?.status?.version;
    return { ...(v ? { reported: v } : {}), source: `live member ${point.member}${v ? ' (its status)' : ' (reports no version)'}` };
  }
  return undefined;
}

/**
 * The plan's version check for a restore point. A refused backup's hint names the newest trusted backup
 * the target can restore, when there is one.
 */
async function versionsFor(i: {
  target: RecoveryTarget;
  observation: ClusterObservation;
  point: RestorePoint | undefined;
  record: SnapshotRecord | undefined;
  backups?: SnapshotRecord[];
  cluster?: string;
  requireSame: boolean;
  signal?: AbortSignal;
}): Promise<PlanVersions | undefined> {
  const evidence = snapshotVersionEvidence(i.point, i.record, i.observation);
  if (!evidence) return undefined;
  const target = await targetEtcdVersion(i.target, i.observation, i.signal);
  const v = planVersions({ snapshot: evidence, ...(target ? { target } : {}), requireSame: i.requireSame });
  if (v.verdict === 'refuse' && v.hint && target && i.backups) {
    const alt = i.backups.find(
      (b) =>
        b.name !== i.record?.name &&
        isTrusted(b) &&
        b.cluster === i.cluster &&
        checkEtcdVersions({ snapshot: { ...(b.etcdVersion ? { reported: b.etcdVersion } : {}), ...(b.storageVersion ? { storage: b.storageVersion } : {}) }, target: target.version, requireSame: i.requireSame }).verdict !== 'refuse',
    );
    if (alt) v.hint += ` (newest trusted backup it can restore: ${alt.name}, revision ${alt.revision})`;
  }
  return v;
}
