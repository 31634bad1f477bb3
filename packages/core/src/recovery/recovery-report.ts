import type { CompanionOutcome } from '../snapshot/companions.js';
import { afterRestoreReport, type AfterRestoreReport } from './after-restore-steps.js';
import type { Journal } from './journal.js';
import type { RecoveryPlan } from './plan.js';
import type { RecoveryTarget } from './target.js';

/** What a completed recovery reports (printed, `-o json|yaml`, and kept in the journal's facts). */
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

/** What the report says of the backup after the restore: its name, or why there is none and what to do. */
function backupAfterReport(facts: Record<string, unknown>): { backupAfter?: { name: string; revision: number }; warning?: string } {
  const b = facts['backupAfter'] as { name?: string; revision?: number; error?: string } | undefined;
  if (!b) return {};
  if (b.name) return { backupAfter: { name: b.name, revision: b.revision ?? 0 } };
  return {
    warning: `no backup of the restored cluster was taken (${b.error}): until one is, the newest backup is the data from before this recovery; take one now with \`kubectl etcd-recover backup create\``,
  };
}

export async function finalReport(plan: RecoveryPlan, journal: Journal, target: RecoveryTarget, resumed: boolean): Promise<RecoveryReport> {
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
