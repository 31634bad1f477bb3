import type { ErrorCode } from '../errors.js';

/**
 * How a member may start: the decision `agent member-init` (the init container of every etcd pod)
 * and `sandbox up` apply before etcd runs. Pure: the facts go in, one action and its reason come
 * out, so the table (docs/design.md, "Member start-up decision") is data and unit-tested.
 *
 * Facts the decision can do without are gathered only when it asks for them: an action
 * `read-bucket` / `read-revision` means "gather that fact, then decide again", and `wait` means
 * "look at the peers again in a moment". The rule it enforces: an empty member never bootstraps a
 * new cluster while a backup of this cluster may exist, and a member whose data is older than the
 * newest verified backup never becomes the truth of a new quorum; either way, ONE line names the
 * newest backup and `kubectl etcd-recover quorum`.
 */

/** What is in this member's data dir. */
export type DataFacts =
  | { present: false }
  | {
      present: true;
      /** The store revision read from the bbolt file without starting etcd; absent until read. */
      revision?: { revision: number } | { error: string };
      /** The data dir was written by a recovery (its marker file): a deliberate restore. */
      restored?: { recoveryId: string; snapshot?: string; at?: string };
    };

/** What the peers say, from one round of asking each of them. */
export type PeerFacts =
  /**
   * A peer with a leader listed the membership; `me` is this member's entry in it: absent, a learner
   * that never started (added by member replace / auto-heal), a learner that started before, an
   * initial member that never started, or a started voting member.
   */
  | { kind: 'quorum'; me: 'absent' | 'learner' | 'started-learner' | 'unstarted' | 'started'; memberId?: string }
  /** A peer answers without a leader but holds data (revision > 1): the cluster lost its quorum. */
  | { kind: 'leaderless-data'; endpoint: string; revision: number }
  /** No peer has a quorum: none answers, or only members still bootstrapping (revision ≤ 1). */
  | { kind: 'none' };

export interface BackupRef {
  name: string;
  revision: number;
  createdAt: string;
}

/** What the bucket says about this cluster's backups. */
export type BucketFacts =
  /** The catalog was listed. No verified backup and no unreadable record: nothing to lose. */
  | {
      kind: 'listed';
      newestVerified?: BackupRef;
      /** The newest trusted backup (verified and not an unconfirmed suspect): what an automatic restore uses. */
      newestTrusted?: BackupRef;
      verified: number;
      unverified: number;
      unreadable: number;
    }
  /** The bucket could not be read (unreachable, denied, missing, …): whether backups exist is unknown. */
  | { kind: 'error'; code: ErrorCode; message: string }
  /** No bucket was given to this member. */
  | { kind: 'not-configured' };

/** How the declared members voted for an automatic restore (auto-restore.ts `tallyVotes`). */
export interface VoteTally {
  /** Every declared member voted "empty" within the freshness bound (by the store's clock). */
  allEmpty: boolean;
  empty: string[];
  /** Members whose vote says they hold data, however old the vote: none of them ever lets a restore happen. */
  hasData: string[];
  /**
   * Those of `hasData` whose vote is older than the bound: a member with data votes when it starts,
   * so after a disaster its old vote is still there until its member-init votes again. Peers wait
   * (bounded) for that new vote instead of refusing at once; absent an "empty" vote, they refuse.
   * Absent in decisions written by older versions.
   */
  hasDataStale?: string[];
  /** No vote, or one older than the bound. */
  missing: string[];
  stale: string[];
}

/** The decision of an automatic-restore round, as far as the start-up decision needs it. */
export interface AutoRestoreDecisionRef {
  round: string;
  recoveryId: string;
  snapshot: { name: string; revision: number; sha256: string };
  token: string;
  bump: number;
  members: string[];
}

/** What the bucket says about automatic restore (only read when autoRestore is on and a row needs it). */
export type RoundFacts =
  /** An open round (its journal not closed) whose decision this member follows. */
  | { kind: 'open'; decision: AutoRestoreDecisionRef }
  /**
   * No open round: how the members voted. `superseded`: a round whose journal is still open but whose
   * backup is no longer the newest trusted one (a newer backup exists): never followed for a new
   * disaster; only a member its restored peers still wait for (row A8) completes it.
   */
  | { kind: 'voting'; tally: VoteTally; superseded?: AutoRestoreDecisionRef }
  /** Another recovery holds the lock or has an unfinished journal: no automatic restore. */
  | { kind: 'locked'; holder: string }
  /** The round could not be read or written. */
  | { kind: 'error'; message: string };

export interface AutoRestoreFacts {
  /** Absent until read (the decision asks for it with `read-round`, which also casts this member's "empty" vote). */
  round?: RoundFacts;
  /** How long, after the peer wait, an empty member waits for every member's vote. */
  voteWaitSeconds: number;
}

export interface StartupFacts {
  member: string;
  data: DataFacts;
  peers: PeerFacts;
  /** Absent until read (the decision asks for it with `read-bucket`). */
  bucket?: BucketFacts;
  /** Seconds since this start-up began asking the peers. */
  waitedSeconds: number;
  /** How long an empty member (or one behind the newest backup) waits for peers with a quorum. */
  peerWaitSeconds: number;
  /** How long an empty member waits to be added by `member replace` / auto-heal to a running cluster. */
  joinWaitSeconds: number;
  /** Present when automatic restore is on (autoRestore on the component, --auto-restore); absent: today's refusals. */
  autoRestore?: AutoRestoreFacts;
}

export type StartupAction =
  /** Start etcd on the data in the data dir. */
  | { action: 'start-on-data'; reason: string; warning?: string }
  /** Empty: initial-cluster-state new with the static initial cluster (a first start, or an initial member its peers bootstrapped without). */
  | { action: 'bootstrap'; reason: string }
  /** Empty: initial-cluster-state existing, the membership as the running cluster lists it. */
  | { action: 'join'; reason: string }
  /** Data of a member that was removed and re-added as a learner: set it aside (never delete), then decide again as empty. */
  | { action: 'set-aside-and-join'; reason: string }
  /** Ask the peers again in a moment. */
  | { action: 'wait'; reason: string }
  /** Gather the bucket facts, then decide again. */
  | { action: 'read-bucket'; reason: string }
  /** Read the data dir's revision, then decide again. */
  | { action: 'read-revision'; reason: string }
  /** Cast this member's "empty" vote, read the votes and the open round, then decide again. */
  | { action: 'read-round'; reason: string }
  /** Every member voted empty and no round is open: take the lock, create the ONE decision (If-None-Match), then follow it. */
  | { action: 'auto-restore-decide'; reason: string }
  /** Restore this member from the open round's decision (take the lock, fetch + verify, set aside, restore), then start as new. */
  | { action: 'auto-restore'; decision: AutoRestoreDecisionRef; reason: string }
  /** Do not start: one line (message) and the way out (hint). */
  | { action: 'refuse'; code: ErrorCode; message: string; hint: string; retryable: boolean };

const RUNBOOK_HINT = 'kubectl etcd-recover quorum --dry-run shows the plan; docs/runbooks/quorum-loss.md, "When member-init refuses to start a member"';

export function describeBackup(b: BackupRef): string {
  return `${b.name} (revision ${b.revision}, ${b.createdAt})`;
}

function followRound(d: AutoRestoreDecisionRef): StartupAction {
  return { action: 'auto-restore', decision: d, reason: `restoring from ${d.snapshot.name} (revision ${d.snapshot.revision} + ${d.bump}) as automatic-restore round ${d.round} (${d.recoveryId}) decided` };
}

/** The start-up decision table. Rows are evaluated top to bottom; the first that applies decides. */
export function decideStartup(f: StartupFacts): StartupAction {
  const peerWaitOver = f.waitedSeconds >= f.peerWaitSeconds;
  const d = f.data;
  const p = f.peers;

  if (d.present) {
    // D1: a running quorum is the truth; a member with data rejoins it and catches up from the leader.
    if (p.kind === 'quorum') {
      if (p.me === 'learner') return { action: 'set-aside-and-join', reason: `re-added as learner${p.memberId ? ` ${p.memberId}` : ''} (member replace / auto-heal): its old data must not start` };
      return { action: 'start-on-data', reason: 'data present and a peer has a quorum: etcd rejoins it and catches up' };
    }
    // D2: no quorum to catch up from: this member's data may become part of the new truth. Compare it with the bucket.
    if (!f.bucket) return { action: 'read-bucket', reason: 'data present, no peer has a quorum: comparing it with the newest verified backup' };
    const b = f.bucket;
    if (b.kind !== 'listed') {
      // D3: never keep a member with data from starting because the bucket is down (it bootstraps nothing).
      return { action: 'start-on-data', reason: 'data present', warning: b.kind === 'error' ? `cannot compare the data with the backups (${b.message}); starting on it` : 'no bucket configured: the data is not compared with the backups' };
    }
    // D4: nothing verified to compare with.
    if (!b.newestVerified) return { action: 'start-on-data', reason: 'data present, no verified backup to compare with' };
    const newest = b.newestVerified;
    // D5: written by a recovery after the newest backup (or from it): an operator chose this restore point.
    if (d.restored && (d.restored.snapshot === newest.name || (d.restored.at !== undefined && Date.parse(d.restored.at) >= Date.parse(newest.createdAt)))) {
      return { action: 'start-on-data', reason: `data restored by recovery ${d.restored.recoveryId}${d.restored.snapshot ? ` from ${d.restored.snapshot}` : ''}` };
    }
    // D6
    if (!d.revision) return { action: 'read-revision', reason: `comparing the data's revision with the newest verified backup ${newest.name}` };
    // D7: our reader failed where etcd may not: etcd decides (it refuses a damaged file itself).
    if ('error' in d.revision) return { action: 'start-on-data', reason: 'data present', warning: `cannot read the data's revision (${d.revision.error}); starting on it` };
    // D8
    if (d.revision.revision >= newest.revision) {
      return { action: 'start-on-data', reason: `data at revision ${d.revision.revision}, not behind the newest verified backup ${newest.name} (revision ${newest.revision})` };
    }
    // D9: behind the newest backup: it may start only to catch up from a quorum of its peers.
    if (!peerWaitOver) return { action: 'wait', reason: `data at revision ${d.revision.revision} is behind the newest verified backup (revision ${newest.revision}): waiting for a peer with a quorum to catch up from` };
    // D10
    return {
      action: 'refuse',
      code: 'BACKUPS_EXIST',
      message: `${f.member} holds data at revision ${d.revision.revision}, behind the newest verified backup ${describeBackup(newest)}, and no peer has a quorum: refusing to start it as the cluster's new truth; restore with: kubectl etcd-recover quorum`,
      hint: RUNBOOK_HINT,
      retryable: false,
    };
  }

  // The member is empty.
  if (p.kind === 'quorum') {
    // E1–E4: a running cluster: join it only the way it expects.
    if (p.me === 'learner' || p.me === 'started-learner') return { action: 'join', reason: `joining the running cluster as learner${p.memberId ? ` ${p.memberId}` : ''}` };
    if (p.me === 'unstarted') {
      // A8: its peers may be members an automatic restore already restored: it restores from the same decision (even one a newer backup superseded).
      if (f.autoRestore) {
        const r = f.autoRestore.round;
        if (!r) return { action: 'read-round', reason: 'automatic restore is on: is a round open that this member must follow?' };
        const d = r.kind === 'open' ? r.decision : r.kind === 'voting' ? r.superseded : undefined;
        if (d && d.members.includes(f.member)) return followRound(d);
      }
      return { action: 'bootstrap', reason: `initial member${p.memberId ? ` ${p.memberId}` : ''} starting after its peers bootstrapped` };
    }
    if (p.me === 'started') {
      return {
        action: 'refuse',
        code: 'PRECONDITION',
        message: `${f.member} is empty but still registered as started member${p.memberId ? ` ${p.memberId}` : ''}: starting it would corrupt the cluster`,
        hint: `replace it: kubectl etcd-recover member replace ${f.member} (auto-heal does this)`,
        retryable: false,
      };
    }
    if (f.waitedSeconds < f.joinWaitSeconds) return { action: 'wait', reason: 'the cluster runs without this member; waiting to be added (member replace / auto-heal)' };
    return {
      action: 'refuse',
      code: 'PRECONDITION',
      message: `${f.member} is empty and the running cluster does not list it`,
      hint: `add it: kubectl etcd-recover member replace ${f.member}`,
      retryable: false,
    };
  }
  // E5: a peer holds data without a leader: bootstrapping here would form a second cluster beside it.
  if (p.kind === 'leaderless-data') {
    return {
      action: 'refuse',
      code: 'QUORUM_LOST',
      message: `${f.member} is empty and peer ${p.endpoint} holds data (revision ${p.revision}) without a leader: the cluster lost quorum, so ${f.member} must not bootstrap a new one`,
      hint: 'restore the cluster: kubectl etcd-recover quorum',
      retryable: false,
    };
  }
  // E6: a survivor may still be starting (slow volume, held back): give it time.
  if (!peerWaitOver) return { action: 'wait', reason: `no peer has a quorum yet; waiting up to ${f.peerWaitSeconds}s before looking at the bucket` };
  // E7
  if (!f.bucket) return { action: 'read-bucket', reason: 'empty, and no peer has a quorum: looking for backups of this cluster before bootstrapping' };
  const b = f.bucket;
  // E8/E9: bootstrapping is only right when the bucket proves there is nothing to lose.
  if (b.kind === 'error') {
    return {
      action: 'refuse',
      code: b.code === 'STORE_UNREACHABLE' || b.code === 'TIMEOUT' ? 'STORE_UNREACHABLE' : b.code,
      message: `${f.member} is empty, no peer has a quorum, and the bucket cannot be read (${b.message}): it cannot prove no backup of this cluster exists, so it does not bootstrap`,
      hint: 'fix access to the bucket; the member retries on its next start',
      retryable: true,
    };
  }
  if (b.kind === 'not-configured') {
    return {
      action: 'refuse',
      code: 'CONFIG',
      message: `${f.member} is empty, no peer has a quorum, and no bucket is configured: it cannot prove no backup of this cluster exists, so it does not bootstrap`,
      hint: 'give member-init the recovery contract (--contract-file / ETCD_RECOVER_CONTRACT) or --bucket',
      retryable: false,
    };
  }
  // E10: the rule: never an empty cluster while a verified backup exists.
  if (b.newestVerified) {
    const refusal = `${f.member} is empty, no peer has a quorum, and ${b.verified} verified backup(s) of this cluster exist: refusing to bootstrap an empty cluster; newest backup ${describeBackup(b.newestVerified)}, restore it with: kubectl etcd-recover quorum`;
    const refuse = (why?: string, retryable = false): StartupAction => ({
      action: 'refuse',
      code: 'BACKUPS_EXIST',
      message: why ? `${refusal} (automatic restore: ${why})` : refusal,
      hint: RUNBOOK_HINT,
      retryable,
    });
    // A1–A7: automatic restore (opt-in): every member empty, by their votes → the ONE decision of a round.
    if (!f.autoRestore) return refuse();
    const ar = f.autoRestore;
    if (!ar.round) return { action: 'read-round', reason: 'automatic restore is on: voting "empty" and reading the other members\' votes' };
    const r = ar.round;
    // A1: a round is open: every member follows the same decision.
    if (r.kind === 'open') return r.decision.members.includes(f.member) ? followRound(r.decision) : refuse(`open round ${r.decision.round} does not list ${f.member}`);
    // A2: another recovery (an operator's `quorum`, member replace, auto-heal) holds the lock or has an unfinished journal.
    if (r.kind === 'locked') {
      return { action: 'refuse', code: 'LOCKED', message: `${f.member} is empty and no peer has a quorum, but another recovery of this cluster is under way (${r.holder}): not restoring automatically; newest backup ${describeBackup(b.newestVerified)}`, hint: 'let that recovery finish (kubectl etcd-recover status shows it); the member decides again on its next start', retryable: true };
    }
    if (r.kind === 'error') return refuse(`the votes cannot be read or written: ${r.message}`, true);
    // A3: only a trusted backup (verified, not suspect) is ever restored without an operator.
    if (!b.newestTrusted) return refuse('no trusted backup (every verified backup is suspect): confirm one or run quorum');
    const t = r.tally;
    // A4: a member that holds data never lets an automatic restore happen (its own rows decide how it starts).
    // Said recently: refuse now. Said long ago (at its last start): wait below for its new vote.
    const staleData = t.hasDataStale ?? [];
    const freshData = t.hasData.filter((m) => !staleData.includes(m));
    if (freshData.length) return refuse(`not while ${freshData.join(', ')} hold${freshData.length === 1 ? 's' : ''} data`);
    // A5: every declared member voted empty, recently: decide.
    if (t.allEmpty) return { action: 'auto-restore-decide', reason: `every member (${t.empty.join(', ')}) is empty: restoring from the newest trusted backup ${describeBackup(b.newestTrusted)}` };
    // A6/A7: wait (bounded) for the other members' votes, then refuse as without automatic restore.
    const waiting = [...t.missing, ...t.stale, ...staleData];
    if (f.waitedSeconds < f.peerWaitSeconds + ar.voteWaitSeconds) return { action: 'wait', reason: `automatic restore: waiting for the votes of ${waiting.join(', ')} (every member must be empty)` };
    if (staleData.length) return refuse(`not while ${staleData.join(', ')} last said ${staleData.length === 1 ? 'it holds' : 'they hold'} data (no newer vote)`, true);
    return refuse(`no recent vote from ${waiting.join(', ')}, so it is not established that every member is empty`, true);
  }
  // E11: records that cannot be read might be good backups.
  if (b.unreadable > 0) {
    return {
      action: 'refuse',
      code: 'STORE_ERROR',
      message: `${f.member} is empty, no peer has a quorum, and ${b.unreadable} backup record(s) of this cluster cannot be read: it cannot prove no good backup exists, so it does not bootstrap`,
      hint: 'inspect them: kubectl etcd-recover backup list; restore with kubectl etcd-recover quorum',
      retryable: false,
    };
  }
  // E12: a first start (empty bucket, or no backup of this cluster yet).
  return {
    action: 'bootstrap',
    reason: b.unverified ? `no verified backup of this cluster (${b.unverified} failed verification): bootstrapping` : 'no peer has a quorum and the bucket holds no backup of this cluster: bootstrapping',
  };
}
