import type { MemberStatus } from '../etcd/etcd-gateway.js';

/** How far (raft entries) a member's applied index may trail the newest to count as caught up. */
export const CAUGHT_UP_SLACK = 100;

export interface MemberCandidate {
  endpoint: string;
  status?: MemberStatus;
  error?: string;
  /** The error itself, when the member could not be asked. */
  cause?: unknown;
}

export interface MemberChoice {
  chosen: MemberStatus;
  reason: string;
  skipped: { endpoint: string; reason: string }[];
}

/**
 * Picks the member to snapshot: reachable, not a learner, no alarm, caught up
 * with the newest raft index seen; a follower when one qualifies (keeps the
 * snapshot's I/O off the leader); among those the most advanced. With
 * allowNoLeader (quorum lost: a live snapshot from a survivor), members that
 * see no leader qualify too. Pure.
 */
export function chooseSnapshotSource(
  candidates: MemberCandidate[],
  opts: { prefer?: string; allowNoLeader?: boolean } = {},
): MemberChoice | undefined {
  const { prefer } = opts;
  const skipped: { endpoint: string; reason: string }[] = [];
  const healthy: MemberStatus[] = [];
  for (const c of candidates) {
    if (!c.status) skipped.push({ endpoint: c.endpoint, reason: c.error ?? 'unreachable' });
    else if (c.status.isLearner) skipped.push({ endpoint: c.endpoint, reason: 'learner' });
    else if (alarms(c.status).length) skipped.push({ endpoint: c.endpoint, reason: `alarm: ${alarms(c.status).join(', ')}` });
    else if (c.status.leaderId === '0' && !opts.allowNoLeader) skipped.push({ endpoint: c.endpoint, reason: 'no leader (member not in a quorum)' });
    else healthy.push(c.status);
  }
  if (!healthy.length) return undefined;
  const newest = Math.max(...healthy.map((s) => s.raftIndex));
  const caughtUp = healthy.filter((s) => {
    if (newest - s.raftAppliedIndex > CAUGHT_UP_SLACK) {
      skipped.push({ endpoint: s.endpoint, reason: `behind by ${newest - s.raftAppliedIndex} raft entries` });
      return false;
    }
    return true;
  });
  if (prefer) {
    const p = caughtUp.find((s) => s.endpoint === prefer || s.memberId === prefer);
    if (p) return { chosen: p, reason: 'requested', skipped };
  }
  const followers = caughtUp.filter((s) => !s.isLeader);
  const pool = followers.length ? followers : caughtUp;
  const chosen = [...pool].sort((a, b) => b.raftAppliedIndex - a.raftAppliedIndex || a.endpoint.localeCompare(b.endpoint))[0]!;
  return { chosen, reason: followers.length ? 'caught-up follower' : 'leader (no caught-up follower)', skipped };
}

/** Status errors other than "no leader" (which is a quorum condition, not an alarm). */
function alarms(s: MemberStatus): string[] {
  return s.errors.filter((e) => !/no leader/i.test(e));
}
