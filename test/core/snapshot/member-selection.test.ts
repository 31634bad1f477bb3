import { strict as assert } from 'node:assert';
import { chooseSnapshotSource, type MemberStatus } from '@etcd-recover/core';

function st(endpoint: string, o: Partial<MemberStatus> = {}): MemberStatus {
  return {
    endpoint, memberId: endpoint, clusterId: 'c', leaderId: 'L', isLeader: false, isLearner: false, revision: 10,
    raftIndex: 1000, raftAppliedIndex: 1000, raftTerm: 2, dbSize: 1, dbSizeInUse: 1, version: '3.6.16', errors: [], ...o,
  };
}

describe('choosing the member to snapshot', () => {
  it('prefers a caught-up follower over the leader', () => {
    const c = chooseSnapshotSource([
      { endpoint: 'a', status: st('a', { isLeader: true, memberId: 'L' }) },
      { endpoint: 'b', status: st('b', { raftAppliedIndex: 999 }) },
      { endpoint: 'c', error: 'connection refused' },
    ])!;
    assert.equal(c.chosen.endpoint, 'b');
    assert.equal(c.reason, 'caught-up follower');
    assert.deepEqual(c.skipped, [{ endpoint: 'c', reason: 'connection refused' }]);
  });

  it('skips followers that lag, learners and members with alarms; falls back to the leader', () => {
    const c = chooseSnapshotSource([
      { endpoint: 'a', status: st('a', { isLeader: true }) },
      { endpoint: 'b', status: st('b', { raftAppliedIndex: 10 }) },
      { endpoint: 'c', status: st('c', { isLearner: true }) },
      { endpoint: 'd', status: st('d', { errors: ['NOSPACE'] }) },
    ])!;
    assert.equal(c.chosen.endpoint, 'a');
    assert.equal(c.reason, 'leader (no caught-up follower)');
    assert.deepEqual(c.skipped.map((s) => s.endpoint).sort(), ['b', 'c', 'd']);
  });

  it('needs a leader unless told a quorum is lost', () => {
    const lonely = [{ endpoint: 'a', status: st('a', { leaderId: '0' }) }];
    assert.equal(chooseSnapshotSource(lonely), undefined);
    assert.equal(chooseSnapshotSource(lonely, { allowNoLeader: true })!.chosen.endpoint, 'a');
  });

  it('honours an explicit member', () => {
    const c = chooseSnapshotSource([
      { endpoint: 'a', status: st('a', { isLeader: true }) },
      { endpoint: 'b', status: st('b') },
    ], { prefer: 'a' })!;
    assert.equal(c.chosen.endpoint, 'a');
    assert.equal(c.reason, 'requested');
  });
});
