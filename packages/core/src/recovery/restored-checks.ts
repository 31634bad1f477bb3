import { EtcdRecoverError } from '../errors.js';
import { captureSnapshot } from '../snapshot/capture.js';
import type { Catalog, SnapshotRecord } from '../snapshot/catalog.js';
import { measureKeyspace } from './keyspace.js';
import type { RecoveryPlan } from './plan.js';
import type { Keyspace, RecoveryTarget, StepContext } from './target.js';

/*
 * What a restore is judged by once its members run: the restored keyspace against the backup it came
 * from (revision floor, key count, every member's HashKV equal), and the backup of the restored
 * cluster taken as the last step.
 */

/** The backup the plan restores (captured or built by an earlier step, or the planned one). */
export async function restoreRecord(plan: RecoveryPlan, catalog: Catalog, ctx: StepContext): Promise<SnapshotRecord> {
  const name = (ctx.facts['restoreFrom'] as string | undefined) ?? plan.restorePoint?.name;
  if (!name) throw new EtcdRecoverError('INTERNAL', 'the restore point has no backup name yet (capture-live did not run)');
  return catalog.get(name, ctx.signal);
}

/** Key count and per-member HashKV, through the target (Kubernetes: a Job) or the gateway. */
async function keyspace(target: RecoveryTarget, ctx: StepContext, countAt?: number): Promise<Keyspace> {
  return target.keyspace ? target.keyspace(ctx, countAt) : measureKeyspace(target.gateway(), target.members(), ctx.signal, countAt);
}

export async function verifyRestored(plan: RecoveryPlan, target: RecoveryTarget, catalog: Catalog, ctx: StepContext): Promise<void> {
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
export async function backupRestored(plan: RecoveryPlan, target: RecoveryTarget, catalog: Catalog, ctx: StepContext): Promise<string | undefined> {
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
