import type { BumpDecision } from './revision-bump.js';
import type { ClusterObservation, MemberSpec } from './observation.js';
import type { PlanVersions } from './version-check.js';

export type StepKind =
  | 'restore-companions'
  | 'capture-live'
  | 'build-point-in-time'
  | 'stage-snapshot'
  | 'check-space'
  | 'quiesce'
  | 'stop-members'
  | 'set-aside'
  | 'restore-member'
  | 'start-members'
  | 'wait-healthy'
  | 'resume'
  | 'verify-restored'
  | 'backup-restored'
  | 'remove-member'
  | 'add-learner'
  | 'start-member'
  | 'promote'
  | 'repair-cronjobs'
  | 'stuck-pods'
  | 'rollout';

export interface PlanStep {
  id: string;
  kind: StepKind;
  title: string;
  /** Whether the step changes or removes data or membership (none runs before the source is verified). */
  destructive: boolean;
  member?: string;
}

/** What the plan does in the hosted cluster once dependents are back (after-restore.ts). */
export interface PlanAfterRestore {
  /** The Secret with the hosted cluster's kubeconfig; absent: the report lists what to check by hand. */
  hostedKubeconfig?: { secretName: string; key: string };
  stuckPodSeconds: number;
  /** Stuck pods are deleted (the run was told `--yes`), else only reported. */
  deleteStuckPods: boolean;
  /** Control-plane Deployments (`namespace/name`) that get a forced rollout. */
  rollouts: string[];
}

export interface PlanCompanions {
  from: string;
  overwrite: boolean;
  items: { kind: 'Secret' | 'ConfigMap'; name: string }[];
}

/** A point in time rebuilt from the archive (archive/point.ts): what the plan shows of it. */
export interface PointInTimeSpec {
  chain: string;
  baseSnapshot: string;
  baseRevision: number;
  segments: number;
  /** The newest revision the archive holds: what this restore drops past the point. */
  newestArchived: number;
  revisionsDropped: number;
  /** What was asked: a revision, or a time (then `revision` is the newest archived at or before it). */
  asked: { revision: number } | { time: string };
}

export interface RestorePoint {
  kind: 'live' | 'backup' | 'point-in-time';
  /** Backup name (for live and point-in-time: known once captured / built). */
  name?: string;
  /** For live: the member to snapshot. */
  member?: string;
  revision?: number;
  createdAt?: string;
  sha256?: string;
  clusterId?: string;
  totalKeys?: number;
  verified?: boolean;
  pointInTime?: PointInTimeSpec;
  reason: string;
}

export interface RecoveryPlan {
  formatVersion: 1;
  id: string;
  /** 'auto-restore': the members' own restore from the newest trusted backup (member-init, autoRestore on). */
  kind: 'quorum' | 'member-replace' | 'auto-restore';
  cluster: string;
  target: string;
  createdAt: string;
  members: MemberSpec[];
  /** What was lost and what survived when the plan was made. */
  observed: {
    healthy: string[];
    quorum: boolean;
    running: string[];
    withData: string[];
    lost: string[];
    maxRevision?: number;
    clusterId?: string;
  };
  restorePoint?: RestorePoint;
  /** What the command asked for (a resume must ask for the same thing). */
  request?: { restorePoint: 'auto' | 'live' | 'latest' | { name: string } | { toRevision: number } | { toTime: string }; bumpOverride?: number; allowForeign?: boolean; requireSameVersion?: boolean };
  /**
   * The snapshot's etcd version and the target's, and whether the target can restore it
   * (version-check.ts). A `refuse` verdict never runs: the restore is refused before anything is stopped.
   */
  versions?: PlanVersions;
  /** After the restore: the hosted cluster's CronJobs and stuck pods, control-plane rollouts (Kubernetes). */
  afterRestore?: PlanAfterRestore;
  /** `--restore-companions`: the backup whose saved Secrets/ConfigMaps are recreated first (missing ones only, unless overwrite). */
  companions?: PlanCompanions;
  bump?: BumpDecision;
  /** New initial-cluster token for a full restore (a restored cluster is a new cluster). */
  token?: string;
  /** The member being replaced. */
  member?: string;
  /** Data loss the plan implies, as far as it can be known. */
  loss?: { revisions?: number; seconds?: number; note: string };
  steps: PlanStep[];
  warnings: string[];
}

function observedSummary(o: ClusterObservation): RecoveryPlan['observed'] {
  return {
    healthy: o.healthy,
    quorum: o.quorum,
    running: o.members.filter((m) => m.running).map((m) => m.name),
    withData: o.members.filter((m) => m.hasData).map((m) => m.name),
    lost: o.members.filter((m) => m.hasData === false || (!m.running && !m.status)).map((m) => m.name),
    ...(o.maxRevision !== undefined ? { maxRevision: o.maxRevision } : {}),
    ...(o.clusterId ? { clusterId: o.clusterId } : {}),
  };
}

export interface QuorumPlanInput {
  id: string;
  cluster: string;
  target: string;
  now: Date;
  members: MemberSpec[];
  observation: ClusterObservation;
  restorePoint: RestorePoint;
  bump: BumpDecision;
  token: string;
  quiesce: boolean;
  /** The newest trusted backup, to tell what a live restore point gains or loses against it. */
  newestBackup?: { name: string; revision: number; createdAt: string };
  /** The etcd versions the restore crosses (planVersions). */
  versions?: PlanVersions;
  companions?: PlanCompanions;
  afterRestore?: PlanAfterRestore;
  /**
   * Back the restored cluster up as the last step of the restore itself (the recovery command: yes;
   * a drill, whose cluster is thrown away: no). Until a backup of the restored data exists the
   * newest backup is the data from before, and an automatic restore would go back to it, undoing
   * a deliberate rollback.
   */
  backupAfter?: boolean;
}

/**
 * The quorum-loss restore as data. Pure: the same inputs give the same plan.
 * Order matters and is the safety argument: the restore source is captured
 * and verified before anything is stopped; every member's old data is set
 * aside before any new data is written; dependents are resumed only after
 * etcd is healthy and its keyspace verified; what the restore leaves behind in the hosted cluster
 * (stuck CronJobs and pods, control-plane caches) is reconciled last, once the dependents are back.
 */
export function planQuorumRestore(i: QuorumPlanInput): RecoveryPlan {
  const steps: PlanStep[] = [];
  const rp = i.restorePoint;
  // First of all: the Jobs that stage and restore mount these Secrets (bucket credentials, age key, TLS).
  if (i.companions) {
    const c = i.companions;
    steps.push({
      id: 'restore-companions',
      kind: 'restore-companions',
      title: `recreate the missing Secrets/ConfigMaps saved with backup ${c.from} (${c.items.map((x) => x.name).join(', ')})${c.overwrite ? '; overwrite those that differ' : '; existing ones that differ are reported, not overwritten'}`,
      destructive: c.overwrite,
    });
  }
  if (rp.kind === 'live') {
    steps.push({ id: 'capture-live', kind: 'capture-live', title: `snapshot surviving member ${rp.member} into the bucket`, destructive: false });
  }
  if (rp.kind === 'point-in-time') {
    const p = rp.pointInTime!;
    steps.push({
      id: 'build-point-in-time',
      kind: 'build-point-in-time',
      title: `rebuild revision ${rp.revision}: backup ${p.baseSnapshot} (revision ${p.baseRevision}) and ${p.segments} archive segment(s) of chain ${p.chain} replayed in a temporary etcd, its snapshot written to the bucket`,
      destructive: false,
    });
  }
  steps.push({ id: 'stage-snapshot', kind: 'stage-snapshot', title: 'fetch the restore point and verify it natively (sha256, bbolt walk)', destructive: false });
  steps.push({ id: 'check-space', kind: 'check-space', title: 'check every volume has room for the restore (snapshot + restored DB + old data kept aside)', destructive: false });
  if (i.quiesce) steps.push({ id: 'quiesce', kind: 'quiesce', title: 'pause reconciliation and scale dependent workloads to zero', destructive: false });
  steps.push({ id: 'stop-members', kind: 'stop-members', title: 'stop every etcd member', destructive: true });
  for (const m of i.members) steps.push({ id: `set-aside:${m.name}`, kind: 'set-aside', title: `move ${m.name}'s old data aside (kept for rollback)`, destructive: true, member: m.name });
  for (const m of i.members) {
    steps.push({ id: `restore:${m.name}`, kind: 'restore-member', title: `restore ${m.name}'s data (etcdutl, --bump-revision ${i.bump.bump} --mark-compacted)`, destructive: true, member: m.name });
  }
  steps.push({ id: 'start-members', kind: 'start-members', title: 'start every etcd member', destructive: false });
  steps.push({ id: 'wait-healthy', kind: 'wait-healthy', title: 'wait until every member is healthy with one leader', destructive: false });
  // Proven before any client writes again: dependents come back only to a verified keyspace.
  steps.push({ id: 'verify-restored', kind: 'verify-restored', title: 'verify revision and key count on every member', destructive: false });
  if (i.quiesce) steps.push({ id: 'resume', kind: 'resume', title: 'scale dependent workloads back and resume reconciliation', destructive: false });
  if (i.backupAfter) {
    steps.push({ id: 'backup-restored', kind: 'backup-restored', title: 'back up the restored cluster (then the newest backup is what was restored, and no automatic restore goes back to the data from before)', destructive: false });
  }

  const warnings: string[] = [];
  // Once dependents are back: what a restore leaves behind in the hosted cluster (a restore runbook's by-hand steps).
  const ar = i.afterRestore;
  if (ar?.hostedKubeconfig) {
    steps.push({ id: 'repair-cronjobs', kind: 'repair-cronjobs', title: "repair the hosted cluster's CronJobs the restore left stuck (status.active naming Jobs that are gone, a lastScheduleTime in the future)", destructive: false });
    steps.push({
      id: 'stuck-pods',
      kind: 'stuck-pods',
      title: `${ar.deleteStuckPods ? 'delete' : 'report'} the hosted cluster's pods stuck in ContainerCreating or Init for over ${ar.stuckPodSeconds} s${ar.deleteStuckPods ? '' : ' (deleted only with --yes)'}`,
      destructive: false,
    });
  } else if (ar) {
    warnings.push('the recovery contract names no kubeconfig for the hosted cluster (afterRestore.hostedKubeconfig): check its CronJobs and stuck pods by hand after the restore (the report says how)');
  }
  for (const d of ar?.rollouts ?? []) steps.push({ id: `rollout:${d}`, kind: 'rollout', title: `force a rollout of control-plane Deployment ${d} (its caches predate the restore)`, destructive: false });

  const observed = observedSummary(i.observation);
  if (i.observation.quorum) warnings.push('quorum still holds: a full restore discards writes made since the restore point; consider `member replace` instead');
  if (rp.kind === 'backup' && observed.withData.length) warnings.push(`member(s) ${observed.withData.join(', ')} still have data newer than the backup may be; a live snapshot would lose less (--restore-point live)`);
  if (rp.kind === 'backup' && rp.verified === false) warnings.push(`backup ${rp.name} has not been verified before; it is verified before anything is stopped`);
  if (i.versions?.verdict === 'warn') warnings.push(`etcd version: ${i.versions.reason}`);
  if (i.versions?.verdict === 'refuse') warnings.push(`etcd version: REFUSED, nothing will be stopped: ${i.versions.reason}${i.versions.hint ? ` (${i.versions.hint})` : ''}`);

  const loss = quorumLoss(i, observed);
  if (rp.kind === 'live' && i.newestBackup && rp.revision !== undefined && i.newestBackup.revision > rp.revision) {
    warnings.push(`backup ${i.newestBackup.name} (revision ${i.newestBackup.revision}) is newer than the live snapshot of ${rp.member} (revision ${rp.revision}): --restore-point latest would lose less`);
  }

  return {
    formatVersion: 1,
    id: i.id,
    kind: 'quorum',
    cluster: i.cluster,
    target: i.target,
    createdAt: i.now.toISOString(),
    members: i.members,
    observed,
    restorePoint: rp,
    bump: i.bump,
    token: i.token,
    ...(i.versions ? { versions: i.versions } : {}),
    ...(i.companions ? { companions: i.companions } : {}),
    ...(ar ? { afterRestore: ar } : {}),
    loss,
    steps,
    warnings,
  };
}

/**
 * What a quorum restore loses, as far as can be known: measured against the newest revision anyone
 * holds — the most advanced member seen, or a trusted backup newer than every survivor.
 */
function quorumLoss(i: QuorumPlanInput, observed: RecoveryPlan['observed']): RecoveryPlan['loss'] {
  const rp = i.restorePoint;
  const seen = i.observation.maxRevision;
  const backupRev = i.newestBackup?.revision;
  if (rp.kind === 'point-in-time') {
    const p = rp.pointInTime!;
    const newest = Math.max(p.newestArchived, seen ?? 0);
    const revisions = Math.max(0, newest - (rp.revision ?? 0));
    const seconds = rp.createdAt ? Math.max(0, Math.round((i.now.getTime() - Date.parse(rp.createdAt)) / 1000)) : undefined;
    return {
      revisions,
      ...(seconds !== undefined ? { seconds } : {}),
      note: revisions
        ? `the ${revisions} revisions after ${rp.revision} are not restored (asked for: ${'revision' in p.asked ? `revision ${p.asked.revision}` : p.asked.time}); they stay in the archive`
        : `revision ${rp.revision} is the newest the archive and the members hold: nothing is lost`,
    };
  }
  if (rp.kind === 'live') {
    const best = Math.max(seen ?? 0, backupRev ?? 0);
    const gap = rp.revision !== undefined ? Math.max(0, best - rp.revision) : 0;
    if (!gap) return { revisions: 0, seconds: 0, note: 'the surviving member holds the newest data seen (no member or backup is ahead of it): nothing is lost' };
    const ahead = backupRev !== undefined && backupRev >= (seen ?? 0) ? `backup ${i.newestBackup!.name}` : 'the most advanced member seen';
    return { revisions: gap, seconds: 0, note: `the surviving member is ${gap} revisions behind ${ahead}` };
  }
  const seconds = rp.createdAt ? Math.max(0, Math.round((i.now.getTime() - Date.parse(rp.createdAt)) / 1000)) : undefined;
  if (seen === undefined || rp.revision === undefined) {
    return { ...(seconds !== undefined ? { seconds } : {}), note: 'writes after the backup are lost; no member survives to tell how many' };
  }
  const revisions = Math.max(0, seen - rp.revision);
  if (!revisions && observed.withData.length) {
    return { revisions: 0, ...(seconds !== undefined ? { seconds } : {}), note: `the backup (revision ${rp.revision}) is at least as new as every surviving member (highest ${seen}): no write a survivor holds is lost; writes after the backup that no survivor kept cannot be counted` };
  }
  return { revisions, ...(seconds !== undefined ? { seconds } : {}), note: 'writes after the backup are lost' };
}

export interface ReplacePlanInput {
  id: string;
  cluster: string;
  target: string;
  now: Date;
  members: MemberSpec[];
  observation: ClusterObservation;
  member: string;
}

/** Single-member replacement on a live quorum (remove, set aside, re-add as learner, promote). Pure. */
export function planMemberReplace(i: ReplacePlanInput): RecoveryPlan {
  const m = i.member;
  const steps: PlanStep[] = [
    { id: 'remove-member', kind: 'remove-member', title: `remove ${m} from the etcd membership`, destructive: true, member: m },
    { id: 'stop-members', kind: 'stop-members', title: `stop ${m}`, destructive: true, member: m },
    { id: `set-aside:${m}`, kind: 'set-aside', title: `move ${m}'s old data aside (kept for inspection)`, destructive: true, member: m },
    { id: 'add-learner', kind: 'add-learner', title: `add ${m} back as a learner`, destructive: false, member: m },
    { id: 'start-member', kind: 'start-member', title: `start ${m} empty, joining the existing cluster`, destructive: false, member: m },
    { id: 'promote', kind: 'promote', title: `promote ${m} once it has caught up`, destructive: false, member: m },
    { id: 'wait-healthy', kind: 'wait-healthy', title: 'wait until every member is healthy', destructive: false },
  ];
  return {
    formatVersion: 1,
    id: i.id,
    kind: 'member-replace',
    cluster: i.cluster,
    target: i.target,
    createdAt: i.now.toISOString(),
    members: i.members,
    observed: observedSummary(i.observation),
    member: m,
    loss: { revisions: 0, seconds: 0, note: 'no data is lost: the new member copies it from the quorum' },
    steps,
    warnings: [],
  };
}

/** Recovery ids sort by time: rec-<yyyymmddThhmmssZ>-<4 hex>. */
export function newRecoveryId(now: Date, rand: string): string {
  return `rec-${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${rand}`;
}
