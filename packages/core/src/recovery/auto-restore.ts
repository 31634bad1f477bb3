import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError, messageOf } from '../errors.js';
import { layout } from '../layout.js';
import { listAll, readJson } from '../store/object-store.js';
import { isTrusted, isVerified, type Catalog, type SnapshotRecord } from '../snapshot/catalog.js';
import { Journal } from './journal.js';
import { RecoveryLock, describeHolder, storeNow } from '../lock.js';
import { faultAfterStep } from './executor.js';
import { restoreDataDir, restoredBy, setAsideData, volumeStepKey } from './member-data.js';
import { fetchVerifiedSnapshot } from '../snapshot/fetch-verified.js';
import type { MemberSpec } from './observation.js';
import { newRecoveryId, type RecoveryPlan } from './plan.js';
import { bucketHistory } from './recover.js';
import { computeRevisionBump, writeRate, type BumpDecision } from './revision-bump.js';
import type { AutoRestoreDecisionRef, RoundFacts, VoteTally } from './startup-decision.js';

/**
 * Automatic restore (opt-in, `autoRestore` on the component, `--auto-restore` on member-init): when
 * every member of a cluster is empty and trusted backups exist, the members restore themselves from
 * the same newest trusted backup instead of refusing. See docs/design.md, "Automatic restore".
 *
 * - **Votes** (`auto-restore/votes/<member>.json`): each member's init writes what it found in its own
 *   volume — `empty` (renewed while it waits) or `has-data`. "Every member is empty" is established
 *   only when every declared member's vote says `empty` and was written within VOTE_FRESH_MS by the
 *   store's clock (its Last-Modified against that of this member's own vote, written just now).
 * - **Rounds** (`auto-restore/rounds/<round>.json`): ONE decision per round, created with
 *   If-None-Match, naming the snapshot (name, sha256, revision), the new initial-cluster token, the
 *   revision bump and the recovery id of its journal. A round is open while its journal is not
 *   closed; it is completed when every member reported its restore; a new disaster starts the next
 *   round under a new key. An open round whose backup is no longer the newest trusted one is
 *   superseded: never followed again for a new disaster.
 * - **Lock**: the same recovery lock as `quorum` (kind `auto-restore`); members take it one after
 *   the other for their own restore; a holder of another kind means: no automatic restore.
 * - **Journal** (kind `auto-restore`): one `set-aside:<m>` and one `restore:<m>` step per member, so
 *   `status` shows it, `quorum` refuses while it is open, and a member-init that crashed resumes.
 */

export type VoteState = 'empty' | 'has-data';

export interface Vote {
  member: string;
  state: VoteState;
  /** The voter's own clock (informative; freshness is judged by the store's Last-Modified). */
  at: string;
  runId: string;
  revision?: number;
}

/** A vote counts for this long after it was written, by the store's clock. */
export const VOTE_FRESH_MS = 30_000;

export interface AutoRestoreDecision extends AutoRestoreDecisionRef {
  formatVersion: 1;
  cluster: string;
  snapshot: AutoRestoreDecisionRef['snapshot'] & { createdAt: string; clusterId?: string; totalKeys?: number };
  bumpDecision: BumpDecision;
  memberSpecs: MemberSpec[];
  decidedBy: string;
  decidedAt: string;
  votes: VoteTally;
}

/**
 * Counts the votes of the declared members. Pure. A vote is fresh when the store wrote it at most
 * `freshMs` before `now` (both the store's clock); a vote without a time is stale.
 */
export function tallyVotes(members: string[], votes: { member: string; state: VoteState; lastModified?: Date }[], now: Date, freshMs = VOTE_FRESH_MS): VoteTally {
  const t: VoteTally = { allEmpty: false, empty: [], hasData: [], hasDataStale: [], missing: [], stale: [] };
  for (const m of members) {
    const v = votes.find((x) => x.member === m);
    const stale = !v?.lastModified || now.getTime() - v.lastModified.getTime() > freshMs;
    if (!v) t.missing.push(m);
    else if (v.state === 'has-data') {
      // Data blocks however old the vote: only a fresh "empty" vote replaces it.
      t.hasData.push(m);
      if (stale) t.hasDataStale!.push(m);
    } else if (stale) t.stale.push(m);
    else t.empty.push(m);
  }
  t.allEmpty = members.length > 0 && t.empty.length === members.length;
  return t;
}

/** Round keys sort in order: round-000001, round-000002, … */
export function roundName(n: number): string {
  return `round-${String(n).padStart(6, '0')}`;
}

export function nextRoundName(existing: string[]): string {
  const nums = existing.map((r) => Number(/^round-(\d+)$/.exec(r)?.[1] ?? 0));
  return roundName(Math.max(0, ...nums) + 1);
}

/** Writes this member's vote; returns the store's time (the vote's Last-Modified). */
export async function castVote(catalog: Catalog, vote: Omit<Vote, 'at' | 'runId'> & { runId?: string }, signal?: AbortSignal): Promise<Date | undefined> {
  const key = layout.autoRestoreVote(catalog.cluster, vote.member);
  const body: Vote = { ...vote, at: new Date().toISOString(), runId: vote.runId ?? randomBytes(8).toString('hex') };
  await catalog.store.put(key, JSON.stringify(body, null, 2), { contentType: 'application/json', ...(signal ? { signal } : {}) });
  return (await catalog.store.head(key, signal))?.lastModified;
}

async function readVotes(catalog: Catalog, signal?: AbortSignal): Promise<{ member: string; state: VoteState; lastModified?: Date }[]> {
  const out: { member: string; state: VoteState; lastModified?: Date }[] = [];
  for (const o of await listAll(catalog.store, layout.autoRestoreVotesPrefix(catalog.cluster), signal)) {
    const v = await readJson<Vote>(catalog.store, o.key, signal).catch(() => undefined);
    if (v && (v.value.state === 'empty' || v.value.state === 'has-data')) out.push({ member: v.value.member, state: v.value.state, ...(o.lastModified ? { lastModified: o.lastModified } : {}) });
  }
  return out;
}

/** The newest round's decision and whether its journal is still open. */
export async function latestRound(catalog: Catalog, signal?: AbortSignal): Promise<{ names: string[]; decision?: AutoRestoreDecision; open: boolean; journal?: Journal }> {
  const prefix = layout.autoRestoreRoundsPrefix(catalog.cluster);
  const names = (await listAll(catalog.store, prefix, signal)).filter((o) => o.key.endsWith('.json')).map((o) => o.key.slice(prefix.length, -5)).sort();
  const last = names[names.length - 1];
  if (!last) return { names, open: false };
  const got = await readJson<AutoRestoreDecision>(catalog.store, layout.autoRestoreRound(catalog.cluster, last), signal);
  if (!got) return { names, open: false };
  const journal = await Journal.load(catalog.store, catalog.cluster, got.value.recoveryId);
  // A decision whose journal is not written yet (its decider crashed right after) is open: the next follower writes it.
  const open = !journal || journal.doc.status === 'running' || journal.doc.status === 'failed';
  return { names, decision: got.value, open, ...(journal ? { journal } : {}) };
}

function ref(d: AutoRestoreDecision): AutoRestoreDecisionRef {
  return { round: d.round, recoveryId: d.recoveryId, snapshot: { name: d.snapshot.name, revision: d.snapshot.revision, sha256: d.snapshot.sha256 }, token: d.token, bump: d.bump, members: d.members };
}

/**
 * The round facts for the start-up decision: casts this member's "empty" vote, then reads the open
 * round (if any), the lock and unfinished journals of other recoveries, and the votes.
 */
export async function readRoundFacts(catalog: Catalog, member: string, members: string[], o: { runId?: string; signal?: AbortSignal; vote?: boolean } = {}): Promise<RoundFacts> {
  try {
    // A member beside a running quorum (row A8) only looks: it never votes "empty" there.
    const now = o.vote === false ? await storeNow(catalog.store, catalog.cluster, o.signal) : await castVote(catalog, { member, state: 'empty', ...(o.runId ? { runId: o.runId } : {}) }, o.signal);
    const latest = await latestRound(catalog, o.signal);
    let superseded: AutoRestoreDecisionRef | undefined;
    if (latest.decision && latest.open) {
      if (await stillNewest(catalog, latest.decision, o.signal)) return { kind: 'open', decision: ref(latest.decision) };
      superseded = ref(latest.decision);
    }
    const lock = new RecoveryLock(catalog.store, catalog.cluster);
    const held = await lock.read(o.signal);
    if (held && held.holder.kind !== 'auto-restore' && !(await lock.holderIsGone(held.holder, o.signal))) return { kind: 'locked', holder: describeHolder(held.holder) };
    const open = await Journal.findOpen(catalog.store, catalog.cluster);
    if (open && open.doc.plan.kind !== 'auto-restore') return { kind: 'locked', holder: `unfinished ${open.doc.plan.kind} recovery ${open.id} (${open.doc.status})` };
    const tally = tallyVotes(members, await readVotes(catalog, o.signal), now ?? new Date());
    return { kind: 'voting', tally, ...(superseded ? { superseded } : {}) };
  } catch (e) {
    return { kind: 'error', message: messageOf(e) };
  }
}

/** The journal of a round: its plan, one set-aside and one restore step per member (all destructive). */
export function autoRestorePlan(d: AutoRestoreDecision, target: string): RecoveryPlan {
  return {
    formatVersion: 1,
    id: d.recoveryId,
    kind: 'auto-restore',
    cluster: d.cluster,
    target,
    createdAt: d.decidedAt,
    members: d.memberSpecs,
    observed: { healthy: [], quorum: false, running: [], withData: [], lost: d.members },
    restorePoint: {
      kind: 'backup',
      name: d.snapshot.name,
      revision: d.snapshot.revision,
      createdAt: d.snapshot.createdAt,
      sha256: d.snapshot.sha256,
      ...(d.snapshot.clusterId ? { clusterId: d.snapshot.clusterId } : {}),
      ...(d.snapshot.totalKeys !== undefined ? { totalKeys: d.snapshot.totalKeys } : {}),
      verified: true,
      reason: `automatic restore (round ${d.round}): every member was empty; the newest trusted backup`,
    },
    request: { restorePoint: 'latest' },
    bump: d.bumpDecision,
    token: d.token,
    loss: { note: `every member was empty: the newest trusted backup ${d.snapshot.name} is everything that is left` },
    steps: d.memberSpecs.flatMap((m) => [
      { id: `set-aside:${m.name}`, kind: 'set-aside' as const, title: `move whatever is in ${m.name}'s data dir aside (kept)`, destructive: true, member: m.name },
      { id: `restore:${m.name}`, kind: 'restore-member' as const, title: `restore ${m.name}'s data (etcdutl, --bump-revision ${d.bump} --mark-compacted)`, destructive: true, member: m.name },
    ]),
    warnings: [],
  };
}

/** Creates the ONE decision of a new round (If-None-Match); a member that loses the race gets the winner's. */
async function createDecision(catalog: Catalog, me: string, members: MemberSpec[], recoveryId: string, roundNames: string[], tally: VoteTally, signal?: AbortSignal): Promise<AutoRestoreDecision> {
  const now = new Date();
  const { snapshots } = await catalog.list(signal);
  const trusted = snapshots.filter(isTrusted);
  const newest = trusted[0];
  if (!newest) throw new EtcdRecoverError('BACKUPS_EXIST', `no trusted backup of cluster ${catalog.cluster} to restore automatically`, { hint: 'kubectl etcd-recover backup list; restore with kubectl etcd-recover quorum' });
  const past = await bucketHistory({ catalog, ...(signal ? { signal } : {}) });
  const rate = writeRate(trusted);
  const bumpDecision = computeRevisionBump({
    snapshotRevision: newest.revision,
    snapshotCreatedAt: new Date(newest.createdAt),
    now,
    ...(past.maxRevision !== undefined ? { observedMaxRevision: past.maxRevision } : {}),
    ...(rate !== undefined ? { rate } : {}),
  });
  const round = nextRoundName(roundNames);
  const d: AutoRestoreDecision = {
    formatVersion: 1,
    round,
    recoveryId,
    cluster: catalog.cluster,
    snapshot: { name: newest.name, revision: newest.revision, sha256: newest.sha256, createdAt: newest.createdAt, ...(newest.clusterId ? { clusterId: newest.clusterId } : {}), totalKeys: newest.totalKeys },
    token: `${catalog.cluster}-${randomBytes(4).toString('hex')}`,
    bump: bumpDecision.bump,
    bumpDecision,
    members: members.map((m) => m.name),
    memberSpecs: members,
    decidedBy: me,
    decidedAt: now.toISOString(),
    votes: tally,
  };
  const key = layout.autoRestoreRound(catalog.cluster, round);
  if (await catalog.store.put(key, JSON.stringify(d, null, 2), { ifNoneMatch: true, contentType: 'application/json', ...(signal ? { signal } : {}) })) return d;
  const won = await readJson<AutoRestoreDecision>(catalog.store, key, signal);
  if (!won) throw new EtcdRecoverError('STORE_ERROR', `round ${round} exists but cannot be read`, { retryable: true });
  return won.value;
}

export interface AutoRestoreRun {
  catalog: Catalog;
  me: MemberSpec;
  members: MemberSpec[];
  dataDir: string;
  etcdutl: string;
  /** The decision to follow; absent: every member voted empty, decide (or follow whoever decided first). */
  decision?: AutoRestoreDecisionRef;
  /** The tally that made this member decide (recorded in the decision). */
  tally?: VoteTally;
  command: string;
  target: string;
  /** How long to wait for the other members' turns with the lock. */
  lockWaitMs?: number;
  staleAfterMs?: number;
  signal?: AbortSignal;
  progress: (m: string) => void;
  /** Test hook: called right before a step's destructive effect. */
  beforeEffect?: (step: string) => void | Promise<void>;
}

export interface AutoRestoreResult {
  decision: AutoRestoreDecisionRef;
  /** The whole round is completed (every member restored). */
  completed: boolean;
  snapshotFile?: string;
  aside?: string;
}

/**
 * This member's part of an automatic-restore round: takes the recovery lock (waiting while another
 * member of the same round holds it; refusing, LOCKED, when any other recovery does), decides the
 * round if nobody has, fetches and verifies the snapshot natively (sha256 against the decision and
 * the record, bbolt walk) before anything is touched, fences, sets the data dir aside (renamed,
 * never deleted), fences, restores with etcdutl (--bump-revision --mark-compacted, staging then
 * rename, RESTORED_MARKER naming the round's recovery), journals every step and completes the
 * round when every member is restored.
 */
export async function runAutoRestore(o: AutoRestoreRun): Promise<AutoRestoreResult> {
  const { catalog } = o;
  const store = catalog.store;
  const cluster = catalog.cluster;
  const s = o.signal ? { signal: o.signal } : {};
  const deadline = Date.now() + (o.lockWaitMs ?? 15 * 60_000);
  let decisionRef = o.decision;
  for (;;) {
    const lock = new RecoveryLock(store, cluster, { ...(o.staleAfterMs ? { staleAfterMs: o.staleAfterMs } : {}) });
    const candidate = decisionRef?.recoveryId ?? newRecoveryId(new Date(), randomBytes(2).toString('hex'));
    const got = await lock.tryAcquire(candidate, 'auto-restore', o.command, o.signal);
    if ('heldBy' in got) {
      const h = got.heldBy;
      if (h.kind !== 'auto-restore') {
        throw new EtcdRecoverError('LOCKED', `${o.me.name}: not restoring automatically: another recovery of cluster ${cluster} holds the lock (${describeHolder(h)})`, { hint: 'let it finish; the member decides again on its next start', retryable: true });
      }
      if (Date.now() > deadline) throw new EtcdRecoverError('LOCKED', `${o.me.name}: waited too long for the automatic-restore lock (held by ${describeHolder(h)})`, { retryable: true });
      o.progress(`waiting for the recovery lock: ${h.command} restores its member`);
      await sleep(1_000 + Math.floor(Math.random() * 1_000), undefined, s);
      if (!decisionRef) {
        const latest = await latestRound(catalog, o.signal);
        if (latest.decision && latest.open) decisionRef = ref(latest.decision);
      }
      continue;
    }
    try {
      return await underLock(o, lock, decisionRef, candidate);
    } finally {
      await lock.release().catch(() => undefined);
    }
  }
}

async function underLock(o: AutoRestoreRun, lock: RecoveryLock, want: AutoRestoreDecisionRef | undefined, heldId: string): Promise<AutoRestoreResult> {
  const { catalog } = o;
  const store = catalog.store;
  const cluster = catalog.cluster;
  const s = o.signal;
  // Nothing else may be under way: an unfinished journal of another recovery means no automatic restore.
  const open = await Journal.findOpen(store, cluster);
  if (open && open.doc.plan.kind !== 'auto-restore') {
    throw new EtcdRecoverError('LOCKED', `${o.me.name}: not restoring automatically: unfinished ${open.doc.plan.kind} recovery ${open.id} (${open.doc.status})`, { hint: 'resume or abandon it (kubectl etcd-recover quorum / --abandon); the member decides again on its next start', retryable: true });
  }
  const latest = await latestRound(catalog, s);
  let decision: AutoRestoreDecision;
  if (want) {
    const got = await readJson<AutoRestoreDecision>(store, layout.autoRestoreRound(cluster, want.round), s);
    if (!got || got.value.recoveryId !== want.recoveryId) throw new EtcdRecoverError('PRECONDITION', `automatic-restore round ${want.round} changed under ${o.me.name}`, { retryable: true });
    decision = got.value;
  } else if (latest.decision && latest.open && (await stillNewest(catalog, latest.decision, s))) {
    decision = latest.decision; // another member decided while this one waited for the lock
  } else {
    if (latest.decision && latest.open && latest.journal) {
      // Superseded by a newer trusted backup: closed, never followed again.
      latest.journal.doc.status = 'abandoned';
      latest.journal.doc.abandoned = { at: new Date().toISOString(), reason: `superseded: a newer trusted backup exists than ${latest.decision.snapshot.name}; a new round decides`, by: `member-init ${o.me.name}` };
      latest.journal.writable = () => lock.held;
      await latest.journal.save();
    }
    if (!o.tally?.allEmpty) throw new EtcdRecoverError('PRECONDITION', `${o.me.name}: not every member voted empty`, { retryable: true });
    decision = await createDecision(catalog, o.me.name, o.members, heldId, latest.names, o.tally, s);
    o.progress(decision.decidedBy === o.me.name && decision.recoveryId === heldId
      ? `decided automatic-restore round ${decision.round} (${decision.recoveryId}): every member is empty; restoring ${decision.snapshot.name} (revision ${decision.snapshot.revision}), revision bump ${decision.bump} (${decision.bumpDecision.reason}), new cluster token ${decision.token}`
      : `following automatic-restore round ${decision.round} decided by ${decision.decidedBy}`);
  }
  if (heldId !== decision.recoveryId) await lock.retarget(decision.recoveryId, 'auto-restore');
  if (!decision.members.includes(o.me.name)) throw new EtcdRecoverError('PRECONDITION', `automatic-restore round ${decision.round} does not list ${o.me.name}`);

  let journal = await Journal.load(store, cluster, decision.recoveryId);
  if (!journal) {
    journal = Journal.create(store, autoRestorePlan(decision, o.target));
    journal.doc.facts['round'] = decision.round;
  } else if (journal.doc.status === 'completed' || journal.doc.status === 'abandoned') {
    throw new EtcdRecoverError('PRECONDITION', `automatic-restore round ${decision.round} is ${journal.doc.status}; ${o.me.name} decides again`, { retryable: true });
  }
  journal.writable = () => lock.held;
  journal.doc.status = 'running';
  journal.doc.runs.push({ host: o.me.name, pid: process.pid, startedAt: new Date().toISOString(), runId: lock.runId });
  await journal.save();

  const stepOf = (id: string) => journal!.step(id);
  const mark = async (id: string, state: 'running' | 'done', note?: string) => {
    const st = stepOf(id);
    st.state = state;
    if (state === 'running') {
      st.startedAt = new Date().toISOString();
      st.attempts++;
    } else {
      st.finishedAt = new Date().toISOString();
      if (note) st.note = note;
    }
    await journal!.save();
  };
  const me = o.me.name;
  let aside: string | undefined;
  let snapshotFile: string | undefined;
  try {
    if (restoredBy(o.dataDir) === decision.recoveryId) {
      // A crash after the rename, before the journal recorded it: the effect holds.
      for (const id of [`set-aside:${me}`, `restore:${me}`]) if (stepOf(id).state !== 'done') await mark(id, 'done', 'already held');
      o.progress(`data dir already restored by ${decision.recoveryId}`);
    } else {
      // Verified before use: the record must still be the trusted object the round decided on, and the bytes must match it.
      const record: SnapshotRecord = await catalog.get(decision.snapshot.name, s);
      if (record.sha256 !== decision.snapshot.sha256 || !isVerified(record)) {
        throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `backup ${decision.snapshot.name} of round ${decision.round} is no longer the verified object it decided on (${record.sha256 !== decision.snapshot.sha256 ? 'its content changed' : 'its last verification failed'})`, { hint: 'nothing was changed; close the round with kubectl etcd-recover quorum --abandon "REASON" and restore with quorum' });
      }
      snapshotFile = join(dirname(o.dataDir), `snapshot-${decision.recoveryId}.db`);
      const got = await fetchVerifiedSnapshot(catalog, record, snapshotFile, { ...(s ? { signal: s } : {}), progress: o.progress });
      o.progress(`fetched ${record.name} (${got.bytes} bytes) and verified it natively: sha256 matches, revision ${got.revision}, ${got.totalKeys} keys`);
      if (got.revision !== decision.snapshot.revision) throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `backup ${record.name} holds revision ${got.revision}, the round decided on ${decision.snapshot.revision}`);

      await mark(`set-aside:${me}`, 'running');
      await lock.fence(s);
      await o.beforeEffect?.(`set-aside:${me}`);
      const moved = setAsideData(o.dataDir, decision.recoveryId);
      aside = moved.aside;
      faultAfterStep(`set-aside:${me}`);
      o.progress(moved.moved ? `what was in ${o.dataDir} is set aside in ${moved.aside} (never deleted)` : `nothing in ${o.dataDir} to set aside`);
      await mark(`set-aside:${me}`, 'done');

      await mark(`restore:${me}`, 'running');
      await lock.fence(s);
      await o.beforeEffect?.(`restore:${me}`);
      await restoreDataDir({
        etcdutl: o.etcdutl,
        snapshotFile,
        record,
        recoveryId: decision.recoveryId,
        name: me,
        peerURL: o.me.peerURL,
        dataDir: o.dataDir,
        members: decision.memberSpecs,
        token: decision.token,
        bump: decision.bump,
        ...(s ? { signal: s } : {}),
      });
      faultAfterStep(`restore:${me}`);
      rmSync(snapshotFile, { force: true });
      await mark(`restore:${me}`, 'done');
      o.progress(`restored ${record.name} (revision ${record.revision} + ${decision.bump}) into ${o.dataDir}`);
    }
    await store.put(
      volumeStepKey(cluster, decision.recoveryId, me, 'restore'),
      JSON.stringify({ recoveryId: decision.recoveryId, member: me, phase: 'restore', at: new Date().toISOString(), snapshot: decision.snapshot.name, revision: decision.snapshot.revision, bump: decision.bump }, null, 2),
      { contentType: 'application/json', ...(s ? { signal: s } : {}) },
    );
    const completed = decision.members.every((m) => stepOf(`restore:${m}`).state === 'done');
    if (completed) {
      journal.doc.status = 'completed';
      journal.doc.finishedAt = new Date().toISOString();
      journal.doc.facts['report'] = { revisionAfter: decision.snapshot.revision + decision.bump, restorePoint: decision.snapshot.name };
      o.progress(`every member of round ${decision.round} is restored: round completed`);
    }
    await journal.save();
    return { decision: ref(decision), completed, ...(aside ? { aside } : {}) };
  } catch (e) {
    const err = e instanceof EtcdRecoverError ? e : new EtcdRecoverError('STEP_FAILED', messageOf(e), { cause: e });
    for (const st of journal.doc.steps) if (st.state === 'running') {
      st.state = 'failed';
      st.error = err.message;
    }
    if (lock.held && err.code !== 'LOCK_LOST') {
      journal.doc.status = 'failed';
      journal.doc.error = { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
      await journal.save().catch(() => undefined);
    }
    throw err;
  }
}

async function stillNewest(catalog: Catalog, d: AutoRestoreDecision, signal?: AbortSignal): Promise<boolean> {
  const newest = (await catalog.list(signal)).snapshots.find(isTrusted);
  return !newest || newest.name === d.snapshot.name;
}

/** The round a restored data dir belongs to (its marker names the recovery), when that round's journal is of kind auto-restore. */
export async function roundOfRestoredData(catalog: Catalog, recoveryId: string, member: string): Promise<{ token: string; open?: AutoRestoreDecisionRef } | undefined> {
  const j = await Journal.load(catalog.store, catalog.cluster, recoveryId).catch(() => undefined);
  if (!j || j.doc.plan.kind !== 'auto-restore' || !j.doc.plan.token) return undefined;
  const round = j.doc.facts['round'] as string | undefined;
  const unfinished = (j.doc.status === 'running' || j.doc.status === 'failed') && j.doc.steps.some((x) => x.id === `restore:${member}` && x.state !== 'done');
  if (!unfinished || !round) return { token: j.doc.plan.token };
  const got = await readJson<AutoRestoreDecision>(catalog.store, layout.autoRestoreRound(catalog.cluster, round));
  return { token: j.doc.plan.token, ...(got ? { open: ref(got.value) } : {}) };
}
