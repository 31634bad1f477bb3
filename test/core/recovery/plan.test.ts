import { strict as assert } from 'node:assert';
import { observeMembers, threeMembers } from '../../support/observations.js';
import { planMemberReplace, planQuorumRestore, computeRevisionBump, writeRate, MIN_BUMP, type RestorePoint } from '@etcd-recover/core';

const members = threeMembers;
const obs = observeMembers;
const now = new Date('2026-11-21T12:00:00Z');

const live: RestorePoint = { kind: 'live', member: 'etcd-2', revision: 500, reason: 'survivor' };
const backup: RestorePoint = { kind: 'backup', name: 'full-20261121T110000000Z', revision: 400, createdAt: '2026-11-21T11:00:00.000Z', verified: true, reason: 'latest' };

describe('recovery plans are data', () => {
  const input = (rp: RestorePoint, o = obs({ 'etcd-2': 500 })) => ({
    id: 'rec-1', cluster: 'c', target: 'test', now, members, observation: o, restorePoint: rp,
    bump: computeRevisionBump({ snapshotRevision: rp.revision!, snapshotCreatedAt: new Date(rp.createdAt ?? now), now, observedMaxRevision: o.maxRevision }), token: 't', quiesce: true,
  });

  it('is a pure function of its inputs', () => {
    assert.deepEqual(planQuorumRestore(input(live)), planQuorumRestore(input(live)));
  });

  it('verifies the source before any destructive step, sets every member aside before restoring any, resumes dependents last', () => {
    for (const rp of [live, backup]) {
      const ids = planQuorumRestore(input(rp)).steps.map((s) => s.id);
      const firstDestructive = planQuorumRestore(input(rp)).steps.findIndex((s) => s.destructive);
      assert.ok(ids.indexOf('stage-snapshot') < firstDestructive, 'stage (verify) before destruction');
      assert.ok(ids.indexOf('quiesce') < ids.indexOf('stop-members'));
      const lastAside = Math.max(...members.map((m) => ids.indexOf(`set-aside:${m.name}`)));
      const firstRestore = Math.min(...members.map((m) => ids.indexOf(`restore:${m.name}`)));
      assert.ok(lastAside < firstRestore, 'all set aside before any restore');
      assert.ok(ids.indexOf('wait-healthy') < ids.indexOf('verify-restored'));
      // Clients come back only to a verified keyspace (they would change the key count).
      assert.ok(ids.indexOf('verify-restored') < ids.indexOf('resume'));
      assert.equal(ids.at(-1), 'resume');
    }
    assert.equal(planQuorumRestore(input(live)).steps[0]!.id, 'capture-live');
    // The recovery command backs the restored cluster up once its clients are back; a drill does not.
    const ids = planQuorumRestore({ ...input(backup), backupAfter: true }).steps.map((s) => s.id);
    assert.deepEqual(ids.slice(-2), ['resume', 'backup-restored']);
    assert.ok(!planQuorumRestore({ ...input(backup), quiesce: false, backupAfter: true }).steps.some((s) => s.destructive && s.id === 'backup-restored'));
    assert.ok(!planQuorumRestore(input(backup)).steps.some((s) => s.id === 'capture-live'));
  });

  it('states the data loss: none for a live survivor, revisions and seconds for a backup', () => {
    assert.equal(planQuorumRestore(input(live)).loss!.revisions, 0);
    const p = planQuorumRestore(input(backup));
    assert.equal(p.loss!.revisions, 100);
    assert.equal(p.loss!.seconds, 3600);
    assert.match(p.warnings.join(), /still have data/);
  });

  it('warns when quorum still holds', () => {
    const p = planQuorumRestore(input(live, obs({ 'etcd-0': 1, 'etcd-1': 1, 'etcd-2': 500 })));
    // summarize() counts a member healthy only when it sees a leader; these see none.
    assert.equal(p.observed.quorum, false);
  });

  it('replaces one member: membership removal before its data is moved, re-add as learner, promote', () => {
    const ids = planMemberReplace({ id: 'r', cluster: 'c', target: 't', now, members, observation: obs({ 'etcd-0': 5, 'etcd-1': 5 }), member: 'etcd-2' }).steps.map((s) => s.id);
    assert.deepEqual(ids, ['remove-member', 'stop-members', 'set-aside:etcd-2', 'add-learner', 'start-member', 'promote', 'wait-healthy']);
  });
});

describe('revision bump', () => {
  it('has a floor, doubles the observed gap, and estimates from the write rate', () => {
    assert.equal(computeRevisionBump({ snapshotRevision: 10, snapshotCreatedAt: now, now }).bump, MIN_BUMP);
    assert.equal(computeRevisionBump({ snapshotRevision: 10, snapshotCreatedAt: now, now, observedMaxRevision: 300_010 }).bump, 600_000);
    const hourAgo = new Date(now.getTime() - 3_600_000);
    assert.equal(computeRevisionBump({ snapshotRevision: 10, snapshotCreatedAt: hourAgo, now, rate: 100 }).bump, 720_000);
  });

  it('accepts an override, but never one below what members already saw', () => {
    assert.equal(computeRevisionBump({ snapshotRevision: 10, snapshotCreatedAt: now, now, override: 5 }).bump, 5);
    assert.throws(() => computeRevisionBump({ snapshotRevision: 10, snapshotCreatedAt: now, now, observedMaxRevision: 100, override: 5 }), /smaller than the 90 revisions/);
  });

  it('derives the write rate from recent backups', () => {
    assert.equal(writeRate([{ revision: 2000, createdAt: '2026-11-21T12:00:10Z' }, { revision: 1000, createdAt: '2026-11-21T12:00:00Z' }]), 100);
    assert.equal(writeRate([{ revision: 1, createdAt: '2026-11-21T12:00:00Z' }]), undefined);
  });
});
