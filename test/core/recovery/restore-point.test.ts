import { strict as assert } from 'node:assert';
import { observeMembers, threeMembers } from '../../support/observations.js';
import { Catalog, MemoryObjectStore, planQuorumRestore, resolveRestorePoint, computeRevisionBump, type SnapshotRecord } from '@etcd-recover/core';

// A survivor that answers with data older than the newest backup is what a member partitioned away
// before the last backup looks like when the others are lost. A real etcd restarted alone does not
// answer at all (it cannot publish itself without quorum), so this state is given as an observation.
const members = threeMembers;
const observe = observeMembers;
const now = new Date('2026-11-21T12:00:00Z');

async function catalogWith(records: Partial<SnapshotRecord>[]): Promise<Catalog> {
  const store = new MemoryObjectStore();
  const catalog = new Catalog(store, 'c');
  for (const r of records) {
    const rec = { formatVersion: 1, cluster: 'c', clusterId: 'c1', totalKeys: 1500, userKeys: 1500, dbSize: 1 << 20, sha256: 'aa', hash: 1, ...r } as SnapshotRecord;
    rec.verification = { ok: true, at: rec.createdAt, by: 'create', sha256: rec.sha256, hash: 1, revision: rec.revision, totalKeys: rec.totalKeys, defects: [] };
    await store.put(`clusters/c/snapshots/${rec.name}.db`, 'x');
    await catalog.writeRecord(rec);
  }
  return catalog;
}

const backupAt = (revision: number, name = `full-2026112111000${revision % 10}000Z`) => ({ name, revision, createdAt: '2026-11-21T11:00:00.000Z' });

describe('restore point auto compares survivors with the newest trusted backup', () => {
  it('takes the backup when every survivor is older than it, and the loss line says so', async () => {
    const catalog = await catalogWith([backupAt(2_000)]);
    const observation = observe({ 'etcd-2': 1_200 });
    const { point, newestBackup } = await resolveRestorePoint({ catalog, observation, request: 'auto' });
    assert.equal(point.kind, 'backup');
    assert.equal(point.revision, 2_000);
    assert.match(point.reason, /newer than every surviving member \(best: etcd-2 at revision 1200\)/);
    const plan = planQuorumRestore({
      id: 'rec-1', cluster: 'c', target: 't', now, members, observation, restorePoint: point, token: 't', quiesce: false,
      bump: computeRevisionBump({ snapshotRevision: 2_000, snapshotCreatedAt: new Date(point.createdAt!), now, observedMaxRevision: 1_200 }),
      newestBackup: newestBackup!,
    });
    assert.equal(plan.loss!.revisions, 0);
    assert.match(plan.loss!.note, /at least as new as every surviving member/);
    assert.doesNotMatch(plan.loss!.note, /nothing is lost/);
  });

  it('takes the live member when it is at least as new, and counts what a forced live restore loses against a newer backup', async () => {
    const catalog = await catalogWith([backupAt(2_000)]);
    const ahead = await resolveRestorePoint({ catalog, observation: observe({ 'etcd-2': 2_500 }), request: 'auto' });
    assert.equal(ahead.point.kind, 'live');
    assert.match(ahead.point.reason, /newest trusted backup .* is at revision 2000/);

    const observation = observe({ 'etcd-2': 1_200 });
    const forced = await resolveRestorePoint({ catalog, observation, request: 'live' });
    assert.equal(forced.point.kind, 'live');
    const plan = planQuorumRestore({
      id: 'rec-1', cluster: 'c', target: 't', now, members, observation, restorePoint: forced.point, token: 't', quiesce: false,
      bump: computeRevisionBump({ snapshotRevision: 1_200, snapshotCreatedAt: now, now, observedMaxRevision: 1_200 }),
      newestBackup: forced.newestBackup!,
    });
    assert.equal(plan.loss!.revisions, 800);
    assert.match(plan.loss!.note, /800 revisions behind backup/);
    assert.ok(plan.warnings.some((w) => /newer than the live snapshot/.test(w)));
  });

  it('never picks a suspect backup on its own', async () => {
    const catalog = await catalogWith([
      { ...backupAt(2_000, 'full-20261121T100000000Z'), createdAt: '2026-11-21T10:00:00.000Z' },
      { ...backupAt(2_100, 'full-20261121T110000000Z'), totalKeys: 0, userKeys: 0, suspect: { reasons: ['keys fell from 1500 to 0'], baseline: { name: 'full-20261121T100000000Z', revision: 2_000, userKeys: 1500, dbSize: 1 << 20 } } },
    ]);
    for (const request of ['auto', 'latest'] as const) {
      const { point } = await resolveRestorePoint({ catalog, observation: observe({}), request });
      assert.equal(point.name, 'full-20261121T100000000Z', request);
      assert.match(point.reason, /suspect: keys fell from 1500 to 0/);
    }
  });
});
