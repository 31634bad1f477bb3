import { strict as assert } from 'node:assert';
import {
  decideStartup,
  nextRoundName,
  tallyVotes,
  VOTE_FRESH_MS,
  type AutoRestoreDecisionRef,
  type BucketFacts,
  type DataFacts,
  type PeerFacts,
  type RoundFacts,
  type StartupFacts,
  type VoteTally,
} from '@etcd-recover/core';

/**
 * The pure parts of automatic restore (docs/design.md, "Automatic restore"): counting the members'
 * votes, and the rows A1–A8 of the start-up decision table.
 */
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];
const now = new Date('2026-12-01T20:00:00Z');
const ago = (ms: number) => new Date(now.getTime() - ms);

describe('automatic restore: vote counting', () => {
  it('every declared member voted empty recently → all empty', () => {
    const t = tallyVotes(MEMBERS, MEMBERS.map((m) => ({ member: m, state: 'empty' as const, lastModified: ago(1_000) })), now);
    assert.equal(t.allEmpty, true);
    assert.deepEqual(t.empty, MEMBERS);
  });
  it('a member that holds data blocks it, however old its vote', () => {
    const t = tallyVotes(MEMBERS, [
      { member: 'etcd-0', state: 'empty', lastModified: ago(1_000) },
      { member: 'etcd-1', state: 'empty', lastModified: ago(1_000) },
      { member: 'etcd-2', state: 'has-data', lastModified: ago(3_600_000) },
    ], now);
    assert.equal(t.allEmpty, false);
    assert.deepEqual(t.hasData, ['etcd-2']);
    assert.deepEqual(t.hasDataStale, ['etcd-2'], 'an hour-old "has data" vote: still blocking, and known to be old');
  });
  it('a missing vote or one older than the bound (store clock) is not established emptiness', () => {
    const t = tallyVotes(MEMBERS, [
      { member: 'etcd-0', state: 'empty', lastModified: ago(1_000) },
      { member: 'etcd-1', state: 'empty', lastModified: ago(VOTE_FRESH_MS + 1_000) },
      { member: 'etcd-9', state: 'empty', lastModified: ago(1_000) }, // not a declared member
    ], now);
    assert.equal(t.allEmpty, false);
    assert.deepEqual(t.stale, ['etcd-1']);
    assert.deepEqual(t.missing, ['etcd-2']);
    assert.equal(tallyVotes(MEMBERS, [{ member: 'etcd-0', state: 'empty' }], now).stale[0], 'etcd-0', 'a vote without a store time is stale');
    assert.equal(tallyVotes([], [], now).allEmpty, false);
  });
  it('rounds start under a new key each time', () => {
    assert.equal(nextRoundName([]), 'round-000001');
    assert.equal(nextRoundName(['round-000001', 'round-000002']), 'round-000003');
  });
});

const newest = { name: 'full-20261201T190000000Z', revision: 1200, createdAt: '2026-12-01T19:00:00.000Z' };
const trusted: BucketFacts = { kind: 'listed', newestVerified: newest, newestTrusted: newest, verified: 2, unverified: 0, unreadable: 0 };
const onlySuspect: BucketFacts = { kind: 'listed', newestVerified: newest, verified: 1, unverified: 0, unreadable: 0 };
const empty: DataFacts = { present: false };
const none: PeerFacts = { kind: 'none' };
const tally = (p: Partial<VoteTally>): VoteTally => ({ allEmpty: false, empty: [], hasData: [], missing: [], stale: [], ...p });
const decision: AutoRestoreDecisionRef = { round: 'round-000001', recoveryId: 'rec-20261201T200000Z-ab12', snapshot: { name: newest.name, revision: 1200, sha256: 'ab'.repeat(32) }, token: 'c-1234', bump: 100_000, members: MEMBERS };

function facts(o: { data?: DataFacts; peers?: PeerFacts; bucket?: BucketFacts; waited?: number; round?: RoundFacts; auto?: boolean }): StartupFacts {
  return {
    member: 'etcd-1',
    data: o.data ?? empty,
    peers: o.peers ?? none,
    ...(o.bucket ? { bucket: o.bucket } : {}),
    waitedSeconds: o.waited ?? 40,
    peerWaitSeconds: 30,
    joinWaitSeconds: 300,
    ...(o.auto === false ? {} : { autoRestore: { voteWaitSeconds: 120, ...(o.round ? { round: o.round } : {}) } }),
  };
}

describe('automatic restore: the start-up decision rows', () => {
  it('off (the default): every member empty with trusted backups still refuses BACKUPS_EXIST, exactly as before', () => {
    const a = decideStartup(facts({ bucket: trusted, auto: false }));
    assert.equal(a.action, 'refuse');
    assert.equal(a.action === 'refuse' && a.code, 'BACKUPS_EXIST');
    assert.doesNotMatch(a.action === 'refuse' ? a.message : '', /automatic/);
  });
  it('on: first it votes and reads the round', () => {
    assert.equal(decideStartup(facts({ bucket: trusted })).action, 'read-round');
  });
  it('still within the peer wait: waits for peers before voting', () => {
    assert.equal(decideStartup(facts({ waited: 5 })).action, 'wait');
  });
  it('A5: every member voted empty → decide', () => {
    assert.equal(decideStartup(facts({ bucket: trusted, round: { kind: 'voting', tally: tally({ allEmpty: true, empty: MEMBERS }) } })).action, 'auto-restore-decide');
  });
  it('A1: an open round → follow its decision', () => {
    const a = decideStartup(facts({ bucket: trusted, round: { kind: 'open', decision } }));
    assert.equal(a.action, 'auto-restore');
    assert.deepEqual(a.action === 'auto-restore' && a.decision, decision);
  });
  it('A4: a member that holds data → refuse BACKUPS_EXIST, naming it', () => {
    const a = decideStartup(facts({ bucket: trusted, round: { kind: 'voting', tally: tally({ empty: ['etcd-0', 'etcd-1'], hasData: ['etcd-2'] }) } }));
    assert.equal(a.action === 'refuse' && a.code, 'BACKUPS_EXIST');
    assert.match(a.action === 'refuse' ? a.message : '', /automatic restore: not while etcd-2 holds data/);
  });
  it('A4/A6/A7: a member whose only "has data" vote is old (cast at its last start) → wait for its new vote, then refuse naming it; never restore', () => {
    const round: RoundFacts = { kind: 'voting', tally: tally({ empty: ['etcd-0', 'etcd-1'], hasData: ['etcd-2'], hasDataStale: ['etcd-2'] }) };
    const waiting = decideStartup(facts({ bucket: trusted, round, waited: 60 }));
    assert.equal(waiting.action, 'wait');
    assert.match(waiting.action === 'wait' ? waiting.reason : '', /waiting for the votes of etcd-2/);
    const a = decideStartup(facts({ bucket: trusted, round, waited: 200 }));
    assert.equal(a.action === 'refuse' && a.code, 'BACKUPS_EXIST');
    assert.ok(a.action === 'refuse' && a.retryable);
    assert.match(a.action === 'refuse' ? a.message : '', /automatic restore: not while etcd-2 last said it holds data/);
    // A fresh "has data" vote beside an old one: refuse at once, naming the fresh one.
    const now = decideStartup(facts({ bucket: trusted, round: { kind: 'voting', tally: tally({ empty: ['etcd-0'], hasData: ['etcd-1', 'etcd-2'], hasDataStale: ['etcd-2'] }) } }));
    assert.match(now.action === 'refuse' ? now.message : '', /not while etcd-1 holds data\)/);
  });
  it('A2: another recovery holds the lock (an operator\'s quorum) → refuse LOCKED, no automatic restore', () => {
    const a = decideStartup(facts({ bucket: trusted, round: { kind: 'locked', holder: 'quorum rec-1 by pid 7 on laptop' } }));
    assert.equal(a.action === 'refuse' && a.code, 'LOCKED');
  });
  it('A3: no trusted backup (only suspect ones) → refuse', () => {
    const a = decideStartup(facts({ bucket: onlySuspect, round: { kind: 'voting', tally: tally({ allEmpty: true, empty: MEMBERS }) } }));
    assert.equal(a.action === 'refuse' && a.code, 'BACKUPS_EXIST');
    assert.match(a.action === 'refuse' ? a.message : '', /no trusted backup/);
  });
  it('A6/A7: votes missing → wait within the vote wait, then refuse (retryable)', () => {
    const round: RoundFacts = { kind: 'voting', tally: tally({ empty: ['etcd-1'], missing: ['etcd-0'], stale: ['etcd-2'] }) };
    assert.equal(decideStartup(facts({ bucket: trusted, round, waited: 60 })).action, 'wait');
    const a = decideStartup(facts({ bucket: trusted, round, waited: 200 }));
    assert.equal(a.action, 'refuse');
    assert.ok(a.action === 'refuse' && a.retryable);
    assert.match(a.action === 'refuse' ? a.message : '', /no recent vote from etcd-0, etcd-2/);
  });
  it('a superseded round (a newer trusted backup exists) is never followed for a new disaster', () => {
    const a = decideStartup(facts({ bucket: trusted, round: { kind: 'voting', tally: tally({ allEmpty: true, empty: MEMBERS }), superseded: decision } }));
    assert.equal(a.action, 'auto-restore-decide');
  });
  it('A8: an initial member that never started beside restored peers follows the open round', () => {
    const quorumUnstarted: PeerFacts = { kind: 'quorum', me: 'unstarted', memberId: 'x' };
    assert.equal(decideStartup(facts({ peers: quorumUnstarted })).action, 'read-round');
    assert.equal(decideStartup(facts({ peers: quorumUnstarted, round: { kind: 'open', decision } })).action, 'auto-restore');
    assert.equal(decideStartup(facts({ peers: quorumUnstarted, round: { kind: 'voting', tally: tally({}) } })).action, 'bootstrap');
    assert.equal(decideStartup(facts({ peers: quorumUnstarted, auto: false })).action, 'bootstrap');
  });
  it('a member with data is never restored automatically (its own rows decide)', () => {
    const a = decideStartup(facts({ data: { present: true, revision: { revision: 1100 } }, bucket: trusted, round: { kind: 'open', decision } }));
    assert.equal(a.action, 'refuse');
    assert.equal(a.action === 'refuse' && a.code, 'BACKUPS_EXIST');
  });
});
