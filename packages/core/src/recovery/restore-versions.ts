import { isTrusted, type SnapshotRecord } from '../snapshot/catalog.js';
import type { ClusterObservation } from './observation.js';
import type { RecoveryPlan, RestorePoint } from './plan.js';
import type { RecoveryTarget, TargetEtcdVersion } from './target.js';
import { checkEtcdVersions, compareEtcdVersions, planVersions, refuseVersionMismatch, type PlanVersions, type SnapshotVersionEvidence } from './version-check.js';

/**
 * The version check of a plan, from what is known on both sides: the etcd the target runs (its own
 * word, else its members') and what the restore point was written by (its backup record, or the live
 * member). The rules themselves are version-check.ts's.
 */

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
export async function versionsFor(i: {
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
