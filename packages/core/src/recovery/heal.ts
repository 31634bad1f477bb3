import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError, isEtcdRecoverError } from '../errors.js';
import type { EtcdGateway, EtcdMember } from '../etcd/etcd-gateway.js';
import type { RecoveryContract } from '../contract/recovery-contract.js';
import type { Catalog, SnapshotRecord } from '../snapshot/catalog.js';
import { executePlan, type RecoveryReport } from './executor.js';
import { Journal } from './journal.js';
import { RecoveryLock, describeHolder, lockedError, type LockHolder } from '../lock.js';
import { observeMembers, quorumSize, type ClusterObservation, type MemberSpec } from './observation.js';
import { newRecoveryId, planMemberReplace, type PlanStep, type RecoveryPlan } from './plan.js';
import type { KubeGateway } from './ports.js';
import type { RecoveryTarget, RestoreParams, StepContext } from './target.js';

export type { KubeGateway, PodInfo, PvcInfo } from './ports.js';

export interface HealResult {
  /** `skipped`: another recovery holds the lock (or an unfinished one is open); nothing was changed. */
  action: 'none' | 'promoted' | 'replaced' | 'refused' | 'skipped';
  healthy: string[];
  unhealthy: string[];
  promoted: string[];
  replaced?: string;
  /** The journal of the replacement (clusters/<cluster>/recoveries/<id>.json). */
  recoveryId?: string;
  /** Whether the replacement resumed an unfinished journal. */
  resumed?: boolean;
  report?: RecoveryReport;
  message: string;
}

export interface HealOptions {
  contract: RecoveryContract;
  etcd: EtcdGateway;
  kube: KubeGateway;
  /** The cluster's bucket: the recovery lock and the journal live beside the backups. */
  catalog: Catalog;
  /** Consecutive failed checks before a member counts as failing. Default 3. */
  checks?: number;
  /** Seconds between checks. Default 10. */
  intervalMs?: number;
  /** How long to wait for the replacement to join and be promoted. Default 240 s. */
  joinTimeoutMs?: number;
  /** Replace this member (member replace), healthy or not — still only while the others hold quorum. */
  member?: string;
  /** The recovery id to journal under (the plugin picks it, so a rerun resumes the same journal). */
  recoveryId?: string;
  /** Abandon an unfinished recovery instead of refusing (member replace --restart). */
  restart?: boolean;
  /** What the journal and the lock record as the command. */
  command?: string;
  /** Lock tuning (tests). */
  lockStaleAfterMs?: number;
  log?: (m: string) => void;
  signal?: AbortSignal;
}

/** The steps of a member replacement done in place on Kubernetes, as the journal records them. */
export function inPlaceReplaceSteps(member: string, pvc: string): PlanStep[] {
  return [
    { id: 'remove-member', kind: 'remove-member', title: `remove ${member} from the etcd membership`, destructive: true, member },
    { id: 'add-learner', kind: 'add-learner', title: `add ${member} back as a learner`, destructive: true, member },
    {
      id: 'start-member',
      kind: 'start-member',
      title: `delete pod ${member} (and PVC ${pvc} only if unusable); the StatefulSet recreates it and member-init sets the old data aside inside the volume and joins empty`,
      destructive: true,
      member,
    },
    { id: 'promote', kind: 'promote', title: `promote ${member} once it has caught up`, destructive: true, member },
    { id: 'wait-healthy', kind: 'wait-healthy', title: 'wait until every member is healthy', destructive: false },
  ];
}

/**
 * One pass of member auto-heal, as HyperShift and kube-aws do it: promote any
 * learner that has caught up; when exactly one member fails several
 * consecutive health checks while the others hold quorum, replace it: remove
 * it from the membership, add it back as a learner, delete its pod (the
 * StatefulSet recreates it; member-init sets the old data aside in the volume
 * and joins the existing cluster empty) and promote it once caught up. Never
 * acts without quorum.
 *
 * One recovery at a time: nothing is changed without the cluster's recovery
 * lock (the same one `quorum` and `member replace` take). Auto-heal skips,
 * changing nothing, while another run holds it; `member` mode (what `member
 * replace` runs in the cluster) refuses with LOCKED. A replacement is journaled
 * like `quorum` and runs through the executor (each destructive step fenced);
 * the next run with the same recovery id — or the next auto-heal pass —
 * resumes an unfinished one.
 */
export async function healOnce(o: HealOptions): Promise<HealResult> {
  const log = o.log ?? (() => undefined);
  const members = o.contract.etcd.members;
  const store = o.catalog.store;
  const cluster = o.catalog.cluster;
  const lockOpts = o.lockStaleAfterMs !== undefined ? { staleAfterMs: o.lockStaleAfterMs } : {};
  const none = { healthy: [] as string[], unhealthy: [] as string[], promoted: [] as string[] };

  if (o.member && !members.some((m) => m.name === o.member)) {
    throw new EtcdRecoverError('USAGE', `no member named ${o.member} (members: ${members.map((m) => m.name).join(', ')})`);
  }

  // A live holder: nothing to do this pass (auto-heal) or refuse (member replace), before any check.
  const probe = new RecoveryLock(store, cluster, lockOpts);
  const held = await probe.read(o.signal);
  if (held && !(await probe.holderIsGone(held.holder, o.signal))) {
    if (o.member) throw lockedError(cluster, held.holder);
    return skipped(held.holder);
  }

  const open = await Journal.findOpen(store, cluster);
  if (open && !(o.member && o.restart)) {
    if (open.doc.plan.kind !== 'member-replace') {
      const msg = `an unfinished ${open.doc.plan.kind} recovery ${open.id} (${open.doc.status}, started ${open.doc.startedAt}) is open`;
      if (o.member) throw new EtcdRecoverError('RESUME_CONFLICT', `${msg}: it must finish first`, { hint: 'resume it with `kubectl etcd-recover quorum`, or close it with --abandon' });
      return { action: 'skipped', ...none, message: `${msg}: auto-heal changes nothing until it finishes (\`kubectl etcd-recover quorum\` resumes it)` };
    }
    if (o.member && open.doc.plan.member !== o.member) {
      throw new EtcdRecoverError('RESUME_CONFLICT', `an unfinished replacement of ${open.doc.plan.member} (${open.id}, ${open.doc.status}) must finish first`, {
        hint: `rerun \`member replace ${open.doc.plan.member}\` to resume it, or pass --restart`,
      });
    }
    // The same replacement (or, for auto-heal, the one left unfinished): resume it.
    log(`resuming the unfinished replacement of ${open.doc.plan.member} (${open.id}, started ${open.doc.startedAt})`);
    return replace(o, open, open.doc.plan.member!, [], [], []);
  }

  // member replace: the lock first, so that of two runs started together exactly one goes on.
  if (o.member) {
    const name = o.member;
    const id = o.recoveryId ?? newRecoveryId(new Date(), randomBytes(2).toString('hex'));
    const lock = new RecoveryLock(store, cluster, lockOpts);
    await lock.acquire(id, 'member-replace', o.command ?? `member replace ${name}`, o.signal);
    try {
      if (open && o.restart) {
        open.doc.status = 'abandoned';
        open.doc.abandoned = { at: new Date().toISOString(), reason: 'member replace --restart', by: o.command ?? 'agent heal' };
        await open.save();
        log(`abandoned unfinished recovery ${open.id}; its set-aside data stays where it is`);
      }
      const healthy = await healthyMembers(o, members.map((m) => m.name));
      const others = healthy.filter((n) => n !== name);
      if (others.length < quorumSize(members.length)) {
        await lock.release();
        return { action: 'refused', healthy, unhealthy: members.map((m) => m.name).filter((n) => !healthy.includes(n)), promoted: [], message: `replacing ${name} needs a quorum of ${quorumSize(members.length)} other healthy members; only ${others.length} are healthy: restore with \`kubectl etcd-recover quorum\`` };
      }
      log(`replacing ${name} as asked`);
      const journal = Journal.create(store, await replacePlan(o, id, name));
      await journal.save();
      return await replace(o, journal, name, healthy, [name], [], lock);
    } catch (e) {
      await lock.release().catch(() => undefined);
      throw e;
    }
  }

  // Auto-heal. A learner that caught up is promoted (a membership change: under the lock).
  const learners = await o.etcd.list(o.signal).then((l) => l.members.filter((m) => m.isLearner), () => [] as EtcdMember[]);
  let promoted: string[] = [];
  if (learners.length) {
    const lock = new RecoveryLock(store, cluster, lockOpts);
    const got = await lock.tryAcquire(`heal-${Date.now().toString(36)}`, 'auto-heal', o.command ?? 'agent heal (promote learners)', o.signal);
    if ('heldBy' in got) return skipped(got.heldBy);
    try {
      promoted = await promoteLearners(o.etcd, lock, log, o.signal);
    } finally {
      await lock.release().catch(() => undefined);
    }
    // A learner still catching up is a replacement in progress, not a failure: never start another.
    const still = await o.etcd.list(o.signal).then((l) => l.members.filter((m) => m.isLearner), () => [] as EtcdMember[]);
    if (still.length) {
      return {
        action: promoted.length ? 'promoted' : 'none',
        ...none,
        promoted,
        message: `a replacement is in progress: learner ${still.map((l) => l.name || l.id).join(', ')} is catching up; the next run promotes it`,
      };
    }
  }

  const checks = o.checks ?? 3;
  const interval = o.intervalMs ?? 10_000;
  let failing = new Set(members.map((m) => m.name));
  let healthy: string[] = [];
  for (let i = 0; i < checks; i++) {
    if (i) await sleep(interval, undefined, o.signal ? { signal: o.signal } : undefined);
    const now = await healthyMembers(o, members.map((m) => m.name));
    healthy = now;
    failing = new Set([...failing].filter((n) => !now.includes(n)));
    if (!failing.size) break;
  }
  const unhealthy = [...failing];
  if (!unhealthy.length) {
    return { action: promoted.length ? 'promoted' : 'none', healthy, unhealthy, promoted, message: `all ${members.length} members healthy` };
  }
  if (healthy.length < quorumSize(members.length)) {
    return {
      action: 'refused',
      healthy,
      unhealthy,
      promoted,
      message: `quorum lost (${healthy.length} of ${members.length} healthy): auto-heal never acts without quorum; restore with \`kubectl etcd-recover quorum\``,
    };
  }
  if (unhealthy.length > 1) {
    return { action: 'refused', healthy, unhealthy, promoted, message: `${unhealthy.length} members failing (${unhealthy.join(', ')}): auto-heal replaces only one at a time; run \`kubectl etcd-recover member replace\`` };
  }
  const name = unhealthy[0]!;
  const id = newRecoveryId(new Date(), randomBytes(2).toString('hex'));
  const lock = new RecoveryLock(store, cluster, lockOpts);
  const got = await lock.tryAcquire(id, 'member-replace', o.command ?? `agent heal (auto-heal of ${name})`, o.signal);
  if ('heldBy' in got) return skipped(got.heldBy);
  try {
    // Under the lock, look again: a recovery may have run between the checks and now.
    if (await Journal.findOpen(store, cluster)) {
      await lock.release();
      return { action: 'skipped', healthy, unhealthy, promoted, message: 'an unfinished recovery appeared while checking; auto-heal changed nothing' };
    }
    const again = await healthyMembers(o, members.map((m) => m.name));
    if (again.includes(name) || again.filter((n) => n !== name).length < quorumSize(members.length)) {
      await lock.release();
      return { action: 'none', healthy: again, unhealthy: members.map((m) => m.name).filter((n) => !again.includes(n)), promoted, message: `the cluster changed while checking (${again.length} of ${members.length} healthy); nothing done this pass` };
    }
    log(`${name} failed ${checks} consecutive health checks; replacing it`);
    const journal = Journal.create(store, await replacePlan(o, id, name));
    await journal.save();
    return await replace(o, journal, name, healthy, unhealthy, promoted, lock);
  } catch (e) {
    await lock.release().catch(() => undefined);
    throw e;
  }
}

function skipped(h: LockHolder): HealResult {
  return { action: 'skipped', healthy: [], unhealthy: [], promoted: [], message: `a recovery holds the lock: ${describeHolder(h)}; auto-heal changed nothing` };
}

/**
 * The plan of a member replacement done in place on Kubernetes (what the heal Job executes, and what
 * `member replace --dry-run` shows of it). Pure.
 */
export function planInPlaceMemberReplace(i: { id: string; cluster: string; target: string; members: MemberSpec[]; observation: ClusterObservation; member: string; pvc: string; now?: Date }): RecoveryPlan {
  const plan = planMemberReplace({ id: i.id, cluster: i.cluster, target: i.target, now: i.now ?? new Date(), members: i.members, observation: i.observation, member: i.member });
  plan.steps = inPlaceReplaceSteps(i.member, i.pvc);
  if (i.observation.healthy.includes(i.member)) plan.warnings.push(`${i.member} is healthy: replacing it lowers fault tolerance until it has caught up`);
  return plan;
}

async function replacePlan(o: HealOptions, id: string, name: string): Promise<RecoveryPlan> {
  const target = new InPlaceMemberTarget(o);
  const observation = await target.observe(o.signal);
  const pvc = o.contract.etcd.members.find((m) => m.name === name)!.pvc;
  return planInPlaceMemberReplace({ id, cluster: o.catalog.cluster, target: target.describe(), members: target.members(), observation, member: name, pvc });
}

/** Runs (or resumes) a journaled replacement through the executor; takes the lock if not given. */
async function replace(o: HealOptions, journal: Journal, name: string, healthy: string[], unhealthy: string[], promoted: string[], held?: RecoveryLock): Promise<HealResult> {
  const lockOpts = o.lockStaleAfterMs !== undefined ? { staleAfterMs: o.lockStaleAfterMs } : {};
  let lock = held;
  if (!lock) {
    lock = new RecoveryLock(o.catalog.store, o.catalog.cluster, lockOpts);
    const got = await lock.tryAcquire(journal.id, 'member-replace', o.command ?? `agent heal (resume ${journal.id})`, o.signal);
    if ('heldBy' in got) {
      if (o.member) throw lockedError(o.catalog.cluster, got.heldBy);
      return skipped(got.heldBy);
    }
  }
  const resumed = journal.doc.runs.length > 0;
  try {
    const report = await executePlan({
      target: new InPlaceMemberTarget(o),
      catalog: o.catalog,
      journal,
      lock,
      ...(o.signal ? { signal: o.signal } : {}),
      onStep: (e) => {
        if (e.phase === 'start') o.log?.(`[${e.index + 1}/${e.total}] ${e.step.title}`);
        else if (e.phase === 'skip') o.log?.(`[${e.index + 1}/${e.total}] ${e.step.title}: ${e.note ?? 'skipped'}`);
        else if (e.step.kind === 'add-learner') o.log?.(`added ${name} back as learner ${String(journal.doc.facts['newMemberId'] ?? '')}`.trim());
      },
      onMessage: (m) => o.log?.(`      ${m}`),
      healthyTimeoutMs: o.joinTimeoutMs ?? 240_000,
    });
    return { action: 'replaced', healthy, unhealthy, promoted, replaced: name, recoveryId: journal.id, resumed, report, message: `replaced ${name} (recovery ${journal.id}${resumed ? ', resumed' : ''})` };
  } catch (e) {
    // The journal is what a rerun resumes; the lock only keeps runs apart.
    await lock.release().catch(() => undefined);
    // Auto-heal: a learner still catching up when the wait ends is a replacement in progress, not a
    // failure — the next pass resumes this journal and promotes it.
    const at = journal.doc.steps.find((x) => x.state === 'failed')?.id;
    if (!o.member && at === 'promote' && !(isEtcdRecoverError(e) && (e.code === 'LOCK_LOST' || e.code === 'ABORTED'))) {
      return { action: 'replaced', healthy, unhealthy, promoted, replaced: name, recoveryId: journal.id, resumed, message: `replaced ${name}; it has not caught up yet — the next run resumes recovery ${journal.id} and promotes it` };
    }
    throw e;
  }
}

/**
 * The cluster as a member-replacement target, from inside it: etcd is reached directly, a member is
 * (re)started by deleting its pod (the StatefulSet recreates it and member-init joins it empty as the
 * learner it was re-added as). Only the steps of an in-place replacement are supported.
 */
class InPlaceMemberTarget implements RecoveryTarget {
  readonly kind = 'kubernetes' as const;
  readonly quiesces = false;

  constructor(private readonly o: HealOptions) {}

  get cluster(): string {
    return this.o.catalog.cluster;
  }

  private get ns(): string {
    return this.o.contract.namespace;
  }

  describe(): string {
    return `kubernetes ${this.ns}/${this.o.contract.etcd.statefulSet} (in the cluster)`;
  }

  members(): MemberSpec[] {
    return this.o.contract.etcd.members.map((m) => ({ name: m.name, peerURL: m.peerURL, clientURL: m.clientURL }));
  }

  gateway(): EtcdGateway {
    return this.o.etcd;
  }

  observe(signal?: AbortSignal): Promise<ClusterObservation> {
    return observeMembers(
      this.members(),
      this.o.etcd,
      async (spec) => {
        const pod = await this.o.kube.getPod(this.ns, spec.name);
        return { running: pod?.phase === 'Running' && !pod.deleting, hasData: undefined };
      },
      signal,
    );
  }

  private unsupported(what: string): never {
    throw new EtcdRecoverError('INTERNAL', `an in-place member replacement has no ${what} step`);
  }

  async stageSnapshot(_r: SnapshotRecord, _c: StepContext): Promise<void> {
    this.unsupported('stage-snapshot');
  }
  async isStaged(): Promise<boolean> {
    return false;
  }
  async quiesce(): Promise<void> {}
  async isQuiesced(): Promise<boolean> {
    return true;
  }
  async resume(): Promise<void> {}
  async isResumed(): Promise<boolean> {
    return true;
  }
  async stopMembers(): Promise<void> {
    this.unsupported('stop-members');
  }
  async areStopped(): Promise<boolean> {
    return false;
  }
  async setAside(): Promise<void> {
    this.unsupported('set-aside (member-init sets the old data aside inside the volume)');
  }
  async isSetAside(): Promise<boolean> {
    return false;
  }
  async restoreMember(_n: string, _r: SnapshotRecord, _p: RestoreParams, _c: StepContext): Promise<void> {
    this.unsupported('restore-member');
  }
  async isRestored(): Promise<boolean> {
    return false;
  }

  /** The pod is deleted (and its PVC, only when unusable); the StatefulSet recreates it. */
  async startMembers(names: string[], mode: { initialState: 'new' | 'existing' }, ctx: StepContext): Promise<void> {
    if (mode.initialState !== 'existing') {
      // Asked while waiting for health: the StatefulSet (re)starts pods on its own; only the member
      // being replaced is ever restarted here.
      ctx.progress(`waiting for ${names.join(', ')} to run again (the StatefulSet starts its pods)`);
      return;
    }
    for (const name of names) {
      const m = this.o.contract.etcd.members.find((x) => x.name === name)!;
      // The PVC is deleted only when it is unusable (gone already, or not bound): a recreated pod
      // would otherwise pin a terminating PVC (pvc-protection) for long.
      const pvc = await this.o.kube.getPvc(this.ns, m.pvc);
      if (pvc && pvc.phase !== 'Bound' && !pvc.deleting) await this.o.kube.deletePvc(this.ns, m.pvc);
      await this.o.kube.deletePod(this.ns, name);
      ctx.progress(`deleted pod ${name}; the StatefulSet recreates it and it rejoins empty (old data kept in ${m.pvc})`);
    }
  }

  /** Started: its pod runs and etcd lists it under its name (an added learner has none until it starts). */
  async areStarted(names: string[], ctx: StepContext): Promise<boolean> {
    const list = await this.o.etcd.list(ctx.signal).catch(() => undefined);
    if (!list) return false;
    for (const name of names) {
      const spec = this.members().find((m) => m.name === name)!;
      const entry = list.members.find((x) => x.peerURLs.includes(spec.peerURL));
      if (!entry?.name) return false;
      const pod = await this.o.kube.getPod(this.ns, name);
      if (!pod || pod.deleting || pod.phase !== 'Running') return false;
    }
    return true;
  }

  asideLocation(name: string): string {
    const m = this.o.contract.etcd.members.find((x) => x.name === name);
    return `PVC ${this.ns}/${m?.pvc ?? name} (member-init moves the old data aside inside the volume)`;
  }
}

async function healthyMembers(o: HealOptions, names: string[]): Promise<string[]> {
  const ok: string[] = [];
  await Promise.all(
    o.contract.etcd.members
      .filter((m) => names.includes(m.name))
      .map(async (m) => {
        try {
          const s = await o.etcd.status(m.clientURL, o.signal);
          if (s.leaderId !== '0' && !s.isLearner) ok.push(m.name);
        } catch {
          /* failing */
        }
      }),
  );
  return ok;
}

async function promoteLearners(etcd: EtcdGateway, lock: RecoveryLock, log: (m: string) => void, signal?: AbortSignal): Promise<string[]> {
  let list: EtcdMember[];
  try {
    list = (await etcd.list(signal)).members;
  } catch {
    return [];
  }
  const done: string[] = [];
  for (const l of list.filter((x) => x.isLearner && x.name)) {
    await lock.fence(signal);
    try {
      await etcd.promote(l.id, signal);
      done.push(l.name);
      log(`promoted caught-up learner ${l.name}`);
    } catch (e) {
      if (!(isEtcdRecoverError(e) && e.retryable)) throw e;
      log(`learner ${l.name} is still catching up`);
    }
  }
  return done;
}
