import { randomBytes } from 'node:crypto';
import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { readJson } from '../store/object-store.js';
import type { Catalog } from '../snapshot/catalog.js';
import { executePlan, type RecoveryReport, type StepEvent } from './executor.js';
import { Journal, type JournalDoc } from './journal.js';
import { RecoveryLock, holderIsGone } from './lock.js';
import { quorumSize, type ClusterObservation } from './observation.js';
import { newRecoveryId, planMemberReplace, planQuorumRestore, type RecoveryPlan } from './plan.js';
import { resolveRestorePoint, type RestorePointRequest } from './restore-point.js';
import { computeRevisionBump, writeRate } from './revision-bump.js';
import type { RecoveryTarget } from './target.js';

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
  const lock = await new RecoveryLock(c.catalog.store, c.catalog.cluster).read(c.signal);
  if (lock && !holderIsGone(lock.holder)) {
    throw new EtcdRecoverError('LOCKED', `another recovery of cluster ${c.catalog.cluster} is running: ${lock.holder.kind} ${lock.holder.recoveryId} by pid ${lock.holder.pid} on ${lock.holder.host}, started ${lock.holder.startedAt}`, {
      hint: 'wait for it to finish (its journal shows progress)',
    });
  }
}

async function openJournal(c: Common, kind: RecoveryPlan['kind']): Promise<Journal | undefined> {
  const open = await Journal.findOpen(c.catalog.store, c.catalog.cluster);
  if (!open) return undefined;
  if (c.restart) return undefined;
  if (open.doc.plan.kind !== kind) {
    throw new EtcdRecoverError('PRECONDITION', `an unfinished ${open.doc.plan.kind} recovery ${open.id} (started ${open.doc.startedAt}, ${open.doc.status}) must finish first`, {
      hint: `rerun the ${open.doc.plan.kind === 'quorum' ? '`quorum`' : '`member replace`'} command to resume it, or pass --restart to abandon it`,
    });
  }
  return open;
}

/**
 * What this cluster's bucket remembers: the etcd cluster IDs its recoveries
 * saw (restores change it) and the highest revision any backup or recovery saw,
 * so that a restore when every member is gone still bumps past it.
 */
async function history(c: Common): Promise<{ clusterIds: string[]; maxRevision?: number }> {
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
  request: RestorePointRequest;
  bumpOverride?: number;
  allowForeign?: boolean;
}

/** Observes the cluster and builds the quorum-restore plan (or finds the one to resume). Changes nothing. */
export async function prepareQuorum(o: QuorumOptions): Promise<Prepared> {
  await refuseIfLocked(o);
  const observation = await o.target.observe(o.signal);
  const open = await openJournal(o, 'quorum');
  if (open) return { plan: open.doc.plan, resume: open, observation };
  const now = o.now ?? new Date();
  const past = await history(o);
  const { point, backups } = await resolveRestorePoint({
    catalog: o.catalog,
    observation,
    request: o.request,
    ...(o.allowForeign ? { allowForeign: true } : {}),
    lineage: past.clusterIds,
    ...(o.signal ? { signal: o.signal } : {}),
  });
  let bump;
  try {
    bump = computeRevisionBump({
      snapshotRevision: point.revision ?? 0,
      snapshotCreatedAt: point.createdAt ? new Date(point.createdAt) : now,
      now,
      ...(highest(observation.maxRevision, past.maxRevision) !== undefined ? { observedMaxRevision: highest(observation.maxRevision, past.maxRevision)! } : {}),
      ...(writeRate(backups) !== undefined ? { rate: writeRate(backups)! } : {}),
      ...(o.bumpOverride !== undefined ? { override: o.bumpOverride } : {}),
    });
  } catch (e) {
    throw new EtcdRecoverError('USAGE', (e as Error).message);
  }
  const plan = planQuorumRestore({
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
  });
  return { plan, observation };
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
      throw new EtcdRecoverError('PRECONDITION', `an unfinished replacement of ${open.doc.plan.member} (${open.id}) must finish first`, {
        hint: `rerun \`member replace ${open.doc.plan.member}\` to resume it, or pass --restart`,
      });
    }
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
}

/** Takes the lock, writes (or resumes) the journal and executes the plan. */
export async function runRecovery(o: RunOptions): Promise<RecoveryReport> {
  const store = o.catalog.store;
  const lock = new RecoveryLock(store, o.catalog.cluster);
  const { plan } = o.prepared;
  await lock.acquire(plan.id, plan.kind, o.command, o.signal);
  try {
    if (o.restart) {
      const open = await Journal.findOpen(store, o.catalog.cluster);
      if (open && open.id !== plan.id) {
        open.doc.status = 'abandoned';
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
