import { strict as assert } from 'node:assert';
import { applyRetention, parseDuration, validateRetention, DEFAULT_RETENTION, type SnapshotRecord, type RetentionPolicy } from '@etcd-recover/core';

const HOUR = 3_600_000;
const now = new Date('2026-11-21T12:00:00.000Z');

function snap(ageMs: number, verified = true): SnapshotRecord {
  const createdAt = new Date(now.getTime() - ageMs).toISOString();
  const sha = `sha-${ageMs}`;
  return {
    formatVersion: 1, name: `s-${String(ageMs).padStart(12, '0')}`, cluster: 'c', clusterId: '1', sourceMember: { id: '1', endpoint: 'e' },
    revision: 1_000_000_000 - ageMs / 1000, raftIndex: 1, raftTerm: 1, etcdVersion: '3.6', dbSize: 1, objectSize: 33, totalKeys: 1, hash: 1, sha256: sha,
    createdAt, completedAt: createdAt, durationMs: 1, toolVersion: 't', objectKey: 'k',
    ...(verified ? { verification: { ok: true, at: createdAt, by: 'create' as const, sha256: sha, hash: 1, revision: 1, totalKeys: 1, defects: [] } } : {}),
  };
}

const kept = (snaps: SnapshotRecord[], p: RetentionPolicy) =>
  applyRetention(snaps, p, now).filter((d) => d.keep).map((d) => d.name);

describe('retention ladder', () => {
  // One snapshot every 30 minutes for 40 days.
  const every30m = Array.from({ length: 40 * 48 }, (_, i) => snap(i * 30 * 60_000 + 60_000));

  it('keeps all of the keep-all window, one per hour for a day, per day for a week, per week for a month', () => {
    const names = new Set(kept(every30m, DEFAULT_RETENTION));
    const ages = every30m.filter((s) => names.has(s.name)).map((s) => now.getTime() - Date.parse(s.createdAt));
    // 6 h of everything: 12 snapshots.
    assert.equal(ages.filter((a) => a <= 6 * HOUR).length, 12);
    // Between 6 h and 24 h: one per UTC hour.
    const hours = ages.filter((a) => a > 6 * HOUR && a <= 24 * HOUR).map((a) => Math.floor((now.getTime() - a) / HOUR));
    assert.equal(new Set(hours).size, hours.length);
    assert.ok(hours.length >= 17 && hours.length <= 19, `hourly ${hours.length}`);
    // Nothing older than 30 days.
    assert.ok(ages.every((a) => a <= 30 * 24 * HOUR), 'nothing past the weekly window');
    // Between 7 d and 30 d: about one per week.
    const weekly = ages.filter((a) => a > 8 * 24 * HOUR);
    assert.ok(weekly.length >= 3 && weekly.length <= 5, `weekly ${weekly.length}`);
  });

  it('is deterministic and order independent', () => {
    const shuffled = [...every30m].reverse();
    assert.deepEqual(kept(shuffled, DEFAULT_RETENTION), kept(every30m, DEFAULT_RETENTION));
  });

  it('caps the total with maxCount, dropping the oldest first', () => {
    const names = kept(every30m, { ...DEFAULT_RETENTION, maxCount: 5 });
    assert.deepEqual(names, every30m.slice(0, 5).map((s) => s.name));
  });

  it('never deletes the newest verified snapshot, even when every rule would', () => {
    const snaps = [snap(HOUR, false), snap(2 * HOUR, false), snap(90 * 24 * HOUR, true)];
    const d = applyRetention(snaps, { keepLast: 1, keepAllWithin: 0, hourlyWithin: 0, dailyWithin: 0, weeklyWithin: 0, maxCount: 1 }, now);
    const byName = Object.fromEntries(d.map((x) => [x.name, x]));
    assert.equal(byName[snaps[2]!.name]!.keep, true);
    assert.match(byName[snaps[2]!.name]!.reasons.join(), /newest verified/);
    // maxCount 1 but the newest verified is protected: the unverified newest goes.
    assert.equal(d.filter((x) => x.keep).length, 1);
  });

  it('keeps the N newest regardless of age', () => {
    const old = [snap(100 * 24 * HOUR), snap(101 * 24 * HOUR), snap(102 * 24 * HOUR)];
    assert.deepEqual(kept(old, { ...DEFAULT_RETENTION, keepLast: 2 }), old.slice(0, 2).map((s) => s.name));
  });

  it('rejects policies that keep nothing or make no sense', () => {
    assert.throws(() => validateRetention({ keepLast: 0, keepAllWithin: 0, hourlyWithin: 0, dailyWithin: 0, weeklyWithin: 0 }), /keeps nothing/);
    assert.throws(() => validateRetention({ ...DEFAULT_RETENTION, maxCount: 0 }), /at least 1/);
    assert.throws(() => validateRetention({ ...DEFAULT_RETENTION, keepLast: -1 }), /non-negative/);
  });

  it('parses durations', () => {
    assert.equal(parseDuration('90m'), 90 * 60_000);
    assert.equal(parseDuration('36h'), 36 * HOUR);
    assert.equal(parseDuration('7d'), 7 * 24 * HOUR);
    assert.equal(parseDuration('2w'), 14 * 24 * HOUR);
    assert.equal(parseDuration('5'), 5 * HOUR);
    assert.throws(() => parseDuration('a week'), /not a duration/);
  });
});
