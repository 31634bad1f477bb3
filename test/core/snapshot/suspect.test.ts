import { strict as assert } from 'node:assert';
import { SUSPECT_THRESHOLDS, applyRetention, isSuspect, isTrusted, pendingSuspects, suspectMark, type RetentionPolicy, type SnapshotRecord } from '@etcd-recover/core';

const HOUR = 3_600_000;
const MiB = 1024 * 1024;
const now = new Date('2026-11-21T12:00:00.000Z');

function snap(ageMs: number, o: { keys?: number; dbSize?: number; verified?: boolean; suspect?: SnapshotRecord['suspect'] } = {}): SnapshotRecord {
  const createdAt = new Date(now.getTime() - ageMs).toISOString();
  const sha = `sha-${ageMs}`;
  const keys = o.keys ?? 100_000;
  return {
    formatVersion: 1, name: `s-${String(ageMs).padStart(12, '0')}`, cluster: 'c', clusterId: '1', sourceMember: { id: '1', endpoint: 'e' },
    revision: 1_000_000_000 - ageMs / 1000, raftIndex: 1, raftTerm: 1, etcdVersion: '3.6', dbSize: o.dbSize ?? 200 * MiB, objectSize: 33,
    totalKeys: keys, userKeys: keys, hash: 1, sha256: sha, createdAt, completedAt: createdAt, durationMs: 1, toolVersion: 't', objectKey: 'k',
    ...(o.verified === false ? {} : { verification: { ok: true, at: createdAt, by: 'create' as const, sha256: sha, hash: 1, revision: 1, totalKeys: keys, defects: [] } }),
    ...(o.suspect ? { suspect: o.suspect } : {}),
  };
}

/** What capture does for each new backup in turn: judge it against the ones before it. */
function series(specs: { age: number; keys?: number; dbSize?: number }[]): SnapshotRecord[] {
  const out: SnapshotRecord[] = [];
  for (const s of [...specs].sort((a, b) => b.age - a.age)) {
    const r = snap(s.age, s);
    const mark = suspectMark(r, out);
    out.push(mark ? { ...r, suspect: mark } : r);
  }
  return out;
}

const aggressive: RetentionPolicy = { keepLast: 1, keepAllWithin: 0, hourlyWithin: 0, dailyWithin: 0, weeklyWithin: 0 };

describe('suspect backups', () => {
  describe('suspectMark (decided when a backup is created)', () => {
    it('the backup of a cluster rolled back to an older, smaller backup is judged against that backup, not the newest', () => {
      const old = snap(5 * HOUR, { keys: 10_000 });
      const newest = snap(HOUR, { keys: 100_000 });
      const after = { totalKeys: 10_000, userKeys: 10_000, dbSize: 200 * MiB };
      // Without knowing where it came from, 10% of the newest is a collapse ...
      assert.ok(suspectMark(after, [old, newest]));
      // ... restored from `old` it is exactly what was asked for; and a real collapse after it still shows.
      assert.equal(suspectMark(after, [old, newest], SUSPECT_THRESHOLDS, old.name), undefined);
      const m = suspectMark({ totalKeys: 3, userKeys: 3, dbSize: 200 * MiB }, [old, newest], SUSPECT_THRESHOLDS, old.name);
      assert.equal(m?.baseline.name, old.name);
      // A name that is not in the bucket falls back to the newest trusted backup.
      assert.equal(suspectMark(after, [old, newest], SUSPECT_THRESHOLDS, 'gone')?.baseline.name, newest.name);
    });

    it('an empty cluster after a 100,000-key one is suspect, naming the baseline and both counts', () => {
      const good = snap(HOUR);
      const m = suspectMark({ totalKeys: 0, userKeys: 0, dbSize: 20 * MiB }, [good]);
      assert.ok(m);
      assert.equal(m.baseline.name, good.name);
      assert.equal(m.baseline.userKeys, 100_000);
      assert.match(m.reasons[0]!, new RegExp(`keys fell from 100000 \\(backup ${good.name}\\) to 0 \\(0%, below 50%\\)`));
      assert.match(m.reasons[1]!, /DB size fell from 200\.0 MiB .* to 20\.0 MiB \(10%, below 25%\)/);
    });

    it('keys falling to just below half are suspect; to half, or growing, are not', () => {
      const good = [snap(HOUR, { keys: 10_000 })];
      assert.ok(suspectMark({ totalKeys: 4_999, userKeys: 4_999, dbSize: 200 * MiB }, good));
      assert.equal(suspectMark({ totalKeys: 5_000, userKeys: 5_000, dbSize: 200 * MiB }, good), undefined);
      assert.equal(suspectMark({ totalKeys: 20_000, userKeys: 20_000, dbSize: 300 * MiB }, good), undefined);
    });

    it('a DB that shrinks to under a quarter of a large one is suspect even with the keys intact (values wiped)', () => {
      const m = suspectMark({ totalKeys: 100_000, userKeys: 100_000, dbSize: 40 * MiB }, [snap(HOUR, { dbSize: 200 * MiB })]);
      assert.equal(m?.reasons.length, 1);
      assert.match(m!.reasons[0]!, /DB size fell/);
    });

    it('never judges small clusters: a baseline under the floors (test clusters, fresh installs) flags nothing', () => {
      const small = [snap(HOUR, { keys: SUSPECT_THRESHOLDS.minBaselineKeys - 1, dbSize: SUSPECT_THRESHOLDS.minBaselineDbSize - 1 })];
      assert.equal(suspectMark({ totalKeys: 0, userKeys: 0, dbSize: 4096 * 4 }, small), undefined);
      assert.equal(suspectMark({ totalKeys: 0, userKeys: 0, dbSize: 4096 * 4 }, []), undefined, 'the first backup has nothing to compare with');
    });

    it('compares with the newest trusted backup: not a failed, unverified or unconfirmed suspect one', () => {
      const good = snap(4 * HOUR, { keys: 50_000 });
      const failed = { ...snap(3 * HOUR, { keys: 10 }), verification: { ...good.verification!, ok: false } };
      const unverified = snap(2 * HOUR, { keys: 10, verified: false });
      const empty = series([{ age: 4 * HOUR, keys: 50_000 }, { age: HOUR, keys: 0 }])[1]!;
      assert.ok(isSuspect(empty));
      const m = suspectMark({ totalKeys: 0, userKeys: 0, dbSize: 200 * MiB }, [good, failed, unverified, { ...empty, name: 'empty' }]);
      assert.equal(m?.baseline.name, good.name, 'still judged against the last good backup, so every later empty backup is suspect too');
    });

    it('a confirmed suspect backup is trusted and becomes the baseline: later backups of the same state are not suspect', () => {
      const [good, empty] = series([{ age: 2 * HOUR, keys: 50_000 }, { age: HOUR, keys: 10 }]);
      const confirmed: SnapshotRecord = { ...empty!, suspect: { ...empty!.suspect!, confirmed: { at: now.toISOString(), by: 'op@host' } } };
      assert.equal(isSuspect(confirmed), false);
      assert.equal(isTrusted(confirmed), true);
      assert.equal(isTrusted(empty!), false);
      assert.equal(suspectMark({ totalKeys: 12, userKeys: 12, dbSize: 200 * MiB }, [good!, confirmed]), undefined);
    });
  });

  describe('retention with a suspect backup', () => {
    it('keeps every older trusted backup while an unconfirmed suspect one is newest, whatever the policy and maxCount say', () => {
      const snaps = series([
        { age: 40 * 24 * HOUR }, { age: 20 * 24 * HOUR }, { age: 3 * 24 * HOUR }, { age: 5 * HOUR },
        { age: 2 * HOUR, keys: 0, dbSize: 1 * MiB }, { age: HOUR, keys: 0, dbSize: 1 * MiB },
      ]);
      assert.deepEqual(pendingSuspects(snaps).map((s) => s.name), [snaps[5]!.name, snaps[4]!.name]);
      const d = applyRetention(snaps, { ...aggressive, maxCount: 1 }, now);
      const trusted = snaps.filter(isTrusted).map((s) => s.name);
      assert.equal(trusted.length, 4);
      for (const name of trusted) {
        const x = d.find((y) => y.name === name)!;
        assert.equal(x.keep, true, `${name} kept`);
        assert.ok(x.reasons.some((r) => r.includes(`suspect backup ${snaps[5]!.name} (and 1 more) is unconfirmed`)), x.reasons.join('; '));
      }
      assert.ok(d.find((x) => x.name === snaps[4]!.name)!.keep === false, 'an older suspect backup is pruned by the policy');
      assert.equal(d.find((x) => x.name === snaps[5]!.name)!.suspect, true);
    });

    it('the newest trusted backup is always kept, not the newest verified (suspect) one alone', () => {
      const snaps = series([{ age: 3 * HOUR }, { age: HOUR, keys: 0, dbSize: 1 * MiB }]);
      const d = applyRetention(snaps, aggressive, now);
      const good = d.find((x) => x.name === snaps[0]!.name)!;
      assert.equal(good.keep, true);
      assert.ok(good.reasons.includes('newest verified, trusted backup: the restore point (always kept)'), good.reasons.join('; '));
    });

    it('once the suspect backup is confirmed, the policy applies again', () => {
      const snaps = series([{ age: 5 * HOUR }, { age: 3 * HOUR }, { age: HOUR, keys: 0, dbSize: 1 * MiB }]);
      const newest = snaps[2]!;
      const confirmed = [...snaps.slice(0, 2), { ...newest, suspect: { ...newest.suspect!, confirmed: { at: now.toISOString(), by: 'op@host' } } }];
      assert.deepEqual(pendingSuspects(confirmed), []);
      const d = applyRetention(confirmed, aggressive, now);
      assert.deepEqual(d.filter((x) => x.keep).map((x) => x.name), [newest.name]);
    });

    it('a suspect backup older than a newer trusted one no longer holds anything back', () => {
      const snaps = series([{ age: 5 * HOUR }, { age: 3 * HOUR, keys: 0, dbSize: 1 * MiB }, { age: HOUR, keys: 120_000 }]);
      assert.equal(isSuspect(snaps[1]!), true);
      assert.equal(isTrusted(snaps[2]!), true, 'judged against the last good backup, not the suspect one');
      assert.deepEqual(pendingSuspects(snaps), []);
      assert.deepEqual(applyRetention(snaps, aggressive, now).filter((x) => x.keep).map((x) => x.name), [snaps[2]!.name]);
    });
  });
});
