import { strict as assert } from 'node:assert';
import { decideStartup, type BucketFacts, type DataFacts, type PeerFacts, type StartupAction, type StartupFacts } from '@etcd-recover/core';

const newest = { name: '20250101T000000Z-rev1200', revision: 1200, createdAt: '2025-01-01T00:00:00.000Z' };
const backups: BucketFacts = { kind: 'listed', newestVerified: newest, verified: 3, unverified: 0, unreadable: 0 };
const emptyBucket: BucketFacts = { kind: 'listed', verified: 0, unverified: 0, unreadable: 0 };
const down: BucketFacts = { kind: 'error', code: 'STORE_UNREACHABLE', message: 'connect ECONNREFUSED 10.0.0.1:9000' };
const empty: DataFacts = { present: false };
const data = (revision?: number, restored?: { recoveryId: string; snapshot?: string; at?: string }): DataFacts => ({
  present: true,
  ...(revision !== undefined ? { revision: { revision } } : {}),
  ...(restored ? { restored } : {}),
});
const none: PeerFacts = { kind: 'none' };
const quorum = (me: 'absent' | 'learner' | 'started-learner' | 'unstarted' | 'started'): PeerFacts => ({ kind: 'quorum', me, memberId: 'abc123' });
const leaderless: PeerFacts = { kind: 'leaderless-data', endpoint: 'http://etcd-0:2379', revision: 900 };

function facts(data: DataFacts, peers: PeerFacts, bucket: BucketFacts | undefined, waitedSeconds = 60): StartupFacts {
  return { member: 'etcd-1', data, peers, ...(bucket ? { bucket } : {}), waitedSeconds, peerWaitSeconds: 30, joinWaitSeconds: 300 };
}

/** The table of docs/design.md, "Member start-up decision": data / peers / bucket → action. */
const table: [string, StartupFacts, StartupAction['action'], string?][] = [
  // A member with data.
  ['data, peer quorum lists it as started → start on data', facts(data(), quorum('started'), undefined), 'start-on-data'],
  ['data behind the newest backup, peer quorum → start on data (catches up from the leader)', facts(data(10), quorum('started'), backups), 'start-on-data'],
  ['data, re-added as a learner that never started → set aside, join', facts(data(), quorum('learner'), undefined), 'set-aside-and-join'],
  ['data, started learner restarting → start on data', facts(data(), quorum('started-learner'), undefined), 'start-on-data'],
  ['data, no quorum, bucket not read → read the bucket', facts(data(), none, undefined), 'read-bucket'],
  ['data, no quorum, bucket down → start on data (bootstraps nothing)', facts(data(), none, down), 'start-on-data'],
  ['data, no quorum, no verified backup → start on data', facts(data(), leaderless, emptyBucket), 'start-on-data'],
  ['data, no quorum, revision not read → read it', facts(data(), none, backups), 'read-revision'],
  ['data at the newest backup\'s revision → start on data', facts(data(1200), none, backups), 'start-on-data'],
  ['data above the newest backup → start on data', facts(data(5000), leaderless, backups), 'start-on-data'],
  ['data behind the newest backup, still waiting for peers → wait', facts(data(1199), none, backups, 5), 'wait'],
  ['data behind the newest backup, no quorum after the wait → refuse', facts(data(1199), none, backups), 'refuse', 'BACKUPS_EXIST'],
  ['data behind, beside a leaderless peer, after the wait → refuse', facts(data(100), leaderless, backups), 'refuse', 'BACKUPS_EXIST'],
  ['data restored from the newest backup by a recovery → start on data', facts(data(1100, { recoveryId: 'r1', snapshot: newest.name }), none, backups), 'start-on-data'],
  ['data restored by a recovery after the newest backup was taken → start on data', facts(data(50, { recoveryId: 'r2', snapshot: 'older', at: '2025-01-02T00:00:00Z' }), none, backups), 'start-on-data'],
  ['data restored before the newest backup was taken, behind it → refuse', facts(data(50, { recoveryId: 'r0', snapshot: 'older', at: '2024-12-01T00:00:00Z' }), none, backups), 'refuse', 'BACKUPS_EXIST'],
  ['data whose revision cannot be read → start on data (etcd judges the file)', facts({ present: true, revision: { error: 'bad magic' } }, none, backups), 'start-on-data'],
  // An empty member.
  ['empty, listed as a learner → join', facts(empty, quorum('learner'), undefined), 'join'],
  ['empty, initial member its peers bootstrapped without → bootstrap (joins them)', facts(empty, quorum('unstarted'), backups), 'bootstrap'],
  ['empty, still registered as started → refuse (member replace)', facts(empty, quorum('started'), backups), 'refuse', 'PRECONDITION'],
  ['empty, not listed, within the join wait → wait', facts(empty, quorum('absent'), undefined, 100), 'wait'],
  ['empty, not listed after the join wait → refuse (member replace)', facts(empty, quorum('absent'), undefined, 301), 'refuse', 'PRECONDITION'],
  ['empty beside a leaderless peer holding data → refuse (quorum)', facts(empty, leaderless, emptyBucket), 'refuse', 'QUORUM_LOST'],
  ['empty, no peer yet, within the peer wait → wait', facts(empty, none, backups, 10), 'wait'],
  ['empty, no peer after the wait, bucket not read → read it', facts(empty, none, undefined), 'read-bucket'],
  ['empty, no peer, verified backups → refuse (quorum)', facts(empty, none, backups), 'refuse', 'BACKUPS_EXIST'],
  ['empty, no peer, bucket unreachable → refuse (cannot prove nothing is lost)', facts(empty, none, down), 'refuse', 'STORE_UNREACHABLE'],
  ['empty, no peer, access denied → refuse', facts(empty, none, { kind: 'error', code: 'ACCESS_DENIED', message: 'AccessDenied' }), 'refuse', 'ACCESS_DENIED'],
  ['empty, no peer, bucket missing → refuse', facts(empty, none, { kind: 'error', code: 'BUCKET_NOT_FOUND', message: 'NoSuchBucket' }), 'refuse', 'BUCKET_NOT_FOUND'],
  ['empty, no peer, no bucket configured → refuse', facts(empty, none, { kind: 'not-configured' }), 'refuse', 'CONFIG'],
  ['empty, no peer, unreadable backup records only → refuse', facts(empty, none, { kind: 'listed', verified: 0, unverified: 0, unreadable: 2 }), 'refuse', 'STORE_ERROR'],
  ['empty, no peer, empty bucket (first start) → bootstrap', facts(empty, none, emptyBucket), 'bootstrap'],
  ['empty, no peer, only backups that failed verification → bootstrap', facts(empty, none, { kind: 'listed', verified: 0, unverified: 2, unreadable: 0 }), 'bootstrap'],
  ['empty, peer wait 0: no peer, empty bucket → bootstrap at once', { ...facts(empty, none, emptyBucket, 0), peerWaitSeconds: 0 }, 'bootstrap'],
];

describe('member start-up decision (decideStartup)', () => {
  for (const [title, f, action, code] of table) {
    it(title, () => {
      const a = decideStartup(f);
      assert.equal(a.action, action, JSON.stringify(a));
      if (code) assert.equal(a.action === 'refuse' && a.code, code, JSON.stringify(a));
    });
  }

  it('the refusal of an empty member is one line naming the newest backup (name, revision, time) and `kubectl etcd-recover quorum`', () => {
    const a = decideStartup(facts(empty, none, backups));
    assert.equal(a.action, 'refuse');
    if (a.action !== 'refuse') return;
    assert.ok(!a.message.includes('\n'));
    assert.match(a.message, /etcd-1 is empty, no peer has a quorum, and 3 verified backup\(s\) of this cluster exist: refusing to bootstrap an empty cluster/);
    assert.ok(a.message.includes(`newest backup ${newest.name} (revision 1200, ${newest.createdAt})`), a.message);
    assert.match(a.message, /kubectl etcd-recover quorum/);
  });

  it('the refusal of a member behind the newest backup names both revisions and `quorum`', () => {
    const a = decideStartup(facts(data(1199), none, backups));
    assert.ok(a.action === 'refuse');
    assert.match(a.message, /etcd-1 holds data at revision 1199, behind the newest verified backup 20250101T000000Z-rev1200 \(revision 1200, 2025-01-01T00:00:00.000Z\)/);
    assert.match(a.message, /kubectl etcd-recover quorum/);
  });

  it('a bucket error refusal is retryable and names the error', () => {
    const a = decideStartup(facts(empty, none, down));
    assert.ok(a.action === 'refuse');
    assert.equal(a.retryable, true);
    assert.match(a.message, /ECONNREFUSED/);
    assert.match(a.message, /cannot prove no backup of this cluster exists/);
  });

  it('waiting never outlasts the bound: an empty member with no peers stops waiting at peerWaitSeconds', () => {
    assert.equal(decideStartup(facts(empty, none, emptyBucket, 29.9)).action, 'wait');
    assert.equal(decideStartup(facts(empty, none, emptyBucket, 30)).action, 'bootstrap');
  });
});
