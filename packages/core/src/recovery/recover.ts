import { randomBytes } from 'node:crypto';
import { EtcdRecoverError, isEtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { listChains } from '../archive/chains.js';
import { readJson } from '../store/object-store.js';
import { isTrusted, type Catalog } from '../snapshot/catalog.js';
import { executePlan, type RecoveryReport, type StepEvent } from './executor.js';
import { Journal, type JournalDoc } from './journal.js';
import { RecoveryLock, lockedError } from '../lock.js';
import { quorumSize, type ClusterObservation } from './observation.js';
import { newRecoveryId, planMemberReplace, planQuorumRestore, type PlanAfterRestore, type PlanCompanions, type RecoveryPlan } from './plan.js';
import { isPointInTimeRequest, newestArchived, resolvePointInTime, resolveRestorePoint, type PointInTimeRequest, type RestorePointRequest } from './restore-point.js';
import { computeRevisionBump, writeRate } from './revision-bump.js';
import type { RecoveryTarget } from './target.js';
import { describeOpenJournal, openJournal, recheckBeforeResume, refuseConflicting, resumeConflicts, type Common } from './resume.js';
import { refusePlannedVersions, versionsFor } from './restore-versions.js';

export interface Prepared {
  plan: RecoveryPlan;
  /** Set when an unfinished recovery of the same kind exists: running the plan resumes it. */
  resume?: Journal;
  observation: ClusterObservation;
}

async function refuseIfLocked(c: Common): Promise<void> {
  const lock = new RecoveryLock(c.catalog.store, c.catalog.cluster);
  const cur = await lock.read(c.signal);
  if (cur && !(await lock.holderIsGone(cur.holder, c.signal))) {
    throw lockedError(c.catalog.cluster, cur.holder, 'wait for it to finish (its journal shows progress)');
  }
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
