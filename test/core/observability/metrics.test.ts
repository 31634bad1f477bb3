import { strict as assert } from 'node:assert';
import {
  Catalog,
  MemoryObjectStore,
  MetricsCollector,
  formatExposition,
  formatSnapshotName,
  layout,
  longestScheduleGapSeconds,
  metricFamilies,
  summarizeBackups,
  type EtcdGateway,
  type ExporterState,
  type MemberStatus,
  type SnapshotRecord,
} from '@etcd-recover/core';

/** A tiny parser of the text format 0.0.4: families with HELP/TYPE, samples with unescaped labels. */
export interface ParsedFamily {
  help?: string;
  type?: string;
  samples: { labels: Record<string, string>; value: number }[];
}
export function parseExposition(text: string): Map<string, ParsedFamily> {
  const fams = new Map<string, ParsedFamily>();
  const fam = (n: string) => fams.get(n) ?? (fams.set(n, { samples: [] }), fams.get(n)!);
  assert.ok(text === '' || text.endsWith('\n'), 'ends with a newline');
  for (const line of text.split('\n').slice(0, -1)) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      const f = fam(meta[2]!);
      assert.equal(f.samples.length, 0, `${meta[1]} of ${meta[2]} comes before its samples`);
      if (meta[1] === 'HELP') f.help = meta[3]!.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      else {
        assert.match(meta[3]!, /^(gauge|counter)$/, line);
        f.type = meta[3]!;
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a valid sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const lre = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
    let lm: RegExpExecArray | null;
    let consumed = 0;
    while (m[2] !== undefined && consumed < m[2].length && (lm = lre.exec(m[2]))) {
      labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      consumed = lre.lastIndex;
    }
    assert.equal(consumed, m[2]?.length ?? 0, `labels of ${line} parse`);
    const f = fams.get(m[1]!);
    assert.ok(f?.type && f.help !== undefined, `${m[1]} has HELP and TYPE before its samples`);
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    assert.ok(m[3] === 'NaN' || !Number.isNaN(value), `value of ${line}`);
    f.samples.push({ labels, value });
  }
  return fams;
}

const HOUR = 3_600_000;
const NOW = Date.parse('2026-12-02T12:00:00.000Z');

function record(at: number, over: Partial<SnapshotRecord> = {}): SnapshotRecord {
  const name = formatSnapshotName(new Date(at));
  return {
    formatVersion: 1, name, cluster: 'c1', clusterId: 'abc', sourceMember: { id: '1', endpoint: 'http://x' }, revision: Math.round(at / 1000) % 100_000, raftIndex: 1, raftTerm: 1,
    etcdVersion: '3.6.0', dbSize: 4096 + (at % 1000), objectSize: 5000, totalKeys: 120, userKeys: 100, hash: 1, sha256: `sha-${name}`, createdAt: new Date(at).toISOString(), completedAt: new Date(at + 1000).toISOString(),
    durationMs: 1000, toolVersion: 't', objectKey: layout.snapshotObject('c1', name),
    verification: { ok: true, at: new Date(at + 1000).toISOString(), by: 'create', sha256: `sha-${name}`, hash: 1, revision: 1, totalKeys: 120, defects: [] },
    ...over,
  };
}

function baseState(over: Partial<ExporterState> = {}): ExporterState {
  return {
    cluster: 'c1', now: NOW, rpoTargetSeconds: 3600, bucketUp: true, bucketAt: NOW, etcdUp: true, etcdAt: NOW,
    members: [{ name: 'etcd-0', up: true, leader: true, dbSize: 8192 }, { name: 'etcd-1', up: false, leader: false }],
    quorum: true, leaderChanges: 2, scrapeErrors: { bucket: 1, etcd: 0 }, jobFailures: { backup: 0, verify: 2 }, ...over,
  };
}

describe('metrics: Prometheus text exposition', () => {
  const newest = record(NOW - 10 * 60_000);
  const failedCheck = record(NOW - 2 * HOUR, { verification: { ...record(0).verification!, ok: false, by: 'verify', at: new Date(NOW - 5 * 60_000).toISOString() } });
  const suspect = record(NOW - 3 * HOUR, { suspect: { reasons: ['keys fell'], baseline: { name: 'x', revision: 1, userKeys: 1, dbSize: 1 } } });
  const unverified = record(NOW - 4 * HOUR);
  delete unverified.verification;
  const summary = summarizeBackups({ snapshots: [newest, failedCheck, suspect, unverified], incomplete: [] }, NOW);

  it('renders valid text format 0.0.4: HELP and TYPE per family, prefixed names, counters (only) ending in _total, a cluster label everywhere', () => {
    const text = formatExposition(metricFamilies(baseState({ backups: summary, recovery: { kind: 'quorum' } })));
    const fams = parseExposition(text);
    assert.ok(fams.size >= 20, `${fams.size} families`);
    for (const [name, f] of fams) {
      assert.match(name, /^etcd_recover_[a-z_]+$/);
      assert.ok(f.help && f.help.length > 10, `${name} has a help text`);
      assert.equal(f.type === 'counter', name.endsWith('_total'), `${name} (${f.type}): _total exactly for counters`);
      assert.ok(f.samples.length > 0, `${name} has samples`);
      for (const s of f.samples) assert.equal(s.labels['cluster'], 'c1', `${name} has the cluster label`);
      if (/_timestamp_seconds$/.test(name)) for (const s of f.samples) assert.ok(s.value > 1.7e9 && s.value < 2e9, `${name} is in seconds`);
    }
    const v = (name: string, labels: Record<string, string> = {}) =>
      fams.get(`etcd_recover_${name}`)?.samples.find((s) => Object.entries(labels).every(([k, x]) => s.labels[k] === x))?.value;
    assert.equal(v('backup_last_timestamp_seconds'), Date.parse(newest.createdAt) / 1000);
    assert.equal(v('backup_last_revision'), newest.revision);
    assert.equal(v('backup_last_size_bytes'), newest.dbSize);
    assert.equal(v('backup_last_keys'), 100);
    assert.equal(v('backup_last_verified_timestamp_seconds'), Date.parse(newest.createdAt) / 1000);
    assert.equal(v('verification_last_success'), 0, 'the newest later verification failed');
    assert.deepEqual(['trusted', 'suspect', 'unverified', 'failed'].map((state) => v('backups', { state })), [1, 1, 1, 1]);
    assert.equal(v('rpo_met'), 1);
    assert.equal(v('rpo_target_seconds'), 3600);
    assert.equal(v('member_up', { member: 'etcd-1' }), 0);
    assert.equal(v('member_is_leader', { member: 'etcd-0' }), 1);
    assert.equal(v('member_db_size_bytes', { member: 'etcd-0' }), 8192);
    assert.equal(v('member_db_size_bytes', { member: 'etcd-1' }), undefined, 'a size never seen is left out, not 0');
    assert.equal(v('leader_changes_total'), 2);
    assert.equal(v('recovery_in_progress', { kind: 'quorum' }), 1);
    assert.equal(v('exporter_scrape_errors_total', { source: 'bucket' }), 1);
    assert.equal(v('exporter_scrape_errors_total', { source: 'etcd' }), 0);
    assert.equal(v('job_consecutive_failures', { job: 'verify' }), 2);
    assert.equal(v('job_consecutive_failures', { job: 'heal' }), undefined, 'a job no source knows is left out');
    assert.equal(fams.get('etcd_recover_leader_changes_total')!.type, 'counter');
    assert.equal(fams.get('etcd_recover_exporter_scrape_errors_total')!.type, 'counter');
  });

  it('before any backup: no backup gauges, every state 0, RPO not met', () => {
    const fams = parseExposition(formatExposition(metricFamilies(baseState({ backups: summarizeBackups({ snapshots: [], incomplete: [] }, NOW) }))));
    for (const n of ['backup_last_timestamp_seconds', 'backup_last_revision', 'backup_last_size_bytes', 'backup_last_keys', 'backup_last_verified_timestamp_seconds', 'verification_last_success']) {
      assert.equal(fams.has(`etcd_recover_${n}`), false, n);
    }
    assert.deepEqual(fams.get('etcd_recover_backups')!.samples.map((s) => s.value), [0, 0, 0, 0]);
    assert.equal(fams.get('etcd_recover_rpo_met')!.samples[0]!.value, 0);
    assert.equal(fams.get('etcd_recover_recovery_in_progress')!.samples[0]!.value, 0);
  });

  it('escapes label values and help text so that they parse back unchanged', () => {
    const odd = 'a"b\\c\nd';
    const text = formatExposition([{ name: 'x_total', type: 'counter', help: 'two\nlines \\ here', samples: [{ labels: { member: odd }, value: 3 }, { labels: {}, value: Infinity }] }]);
    const f = parseExposition(text).get('x_total')!;
    assert.equal(f.help, 'two\nlines \\ here');
    assert.equal(f.samples[0]!.labels['member'], odd);
    assert.equal(f.samples[1]!.value, Infinity);
    assert.throws(() => formatExposition([{ name: 'x_count', type: 'counter', help: 'h', samples: [] }]), /must end with _total/);
    assert.throws(() => formatExposition([{ name: 'bad-name', type: 'gauge', help: 'h', samples: [] }]), /invalid metric name/);
  });

  it('the catalog shows verification failures in a row and uploads left without a record', () => {
    const checked = (at: number, ok: boolean, minutesAgo: number) => {
      const r = record(at);
      return { ...r, verification: { ...r.verification!, ok, by: 'verify' as const, at: new Date(NOW - minutesAgo * 60_000).toISOString() } };
    };
    const a = checked(NOW - 3 * HOUR, false, 1);
    const b = checked(NOW - 4 * HOUR, false, 2);
    const c = checked(NOW - 5 * HOUR, true, 3);
    const d = checked(NOW - 6 * HOUR, false, 4);
    const orphan = (msAgo: number) => ({ name: formatSnapshotName(new Date(NOW - msAgo)), size: 1, lastModified: new Date(NOW - msAgo) });
    const s = summarizeBackups({ snapshots: [a, b, c, d], incomplete: [orphan(HOUR), orphan(2 * HOUR), orphan(60_000), orphan(7 * HOUR)] }, NOW);
    assert.deepEqual(s.failures, { verify: 2, backup: 2 }, 'two failed checks since the last good one; two old orphans newer than the newest backup (a fresh one may still finish, an older one predates it)');
    assert.equal(s.newestTrustedAt, Date.parse(c.createdAt));
    assert.deepEqual(s.states, { trusted: 1, suspect: 0, unverified: 0, failed: 3 });
  });

  it('longest gap of a backup schedule (the RPO default)', () => {
    assert.equal(longestScheduleGapSeconds('0 * * * *'), 3600);
    assert.equal(longestScheduleGapSeconds('*/15 * * * *'), 900);
    assert.equal(longestScheduleGapSeconds('@daily'), 86_400);
    assert.equal(longestScheduleGapSeconds('0 0,18 * * *'), 18 * 3600);
    assert.equal(longestScheduleGapSeconds('0 9 * * 1-5'), 3 * 86_400);
    assert.equal(longestScheduleGapSeconds('not a schedule'), undefined);
    assert.equal(longestScheduleGapSeconds('61 * * * *'), undefined);
  });
});

describe('metrics: collector', () => {
  function fakeEtcd(state: { down: Set<string>; leader: string }): EtcdGateway {
    const eps = ['http://m0', 'http://m1', 'http://m2'];
    return {
      endpoints: eps,
      status: async (ep: string) => {
        if (state.down.has(ep)) throw new Error(`${ep} refused`);
        const id = String(eps.indexOf(ep) + 1);
        return { endpoint: ep, memberId: id, leaderId: state.leader, isLeader: id === state.leader, isLearner: false, dbSize: 1000 * Number(id), revision: 5 } as MemberStatus;
      },
      list: async () => ({ clusterId: 'c', members: eps.map((u, i) => ({ id: String(i + 1), name: `etcd-${i}`, peerURLs: [], clientURLs: [u], isLearner: false })) }),
      close: () => undefined,
    } as unknown as EtcdGateway;
  }

  it('keeps the last good values when the bucket fails, counts errors and leader changes, never throws, and caches for --refresh', async () => {
    const store = new MemoryObjectStore();
    const catalog = new Catalog(store, 'c1');
    const rec = record(NOW - 60_000);
    await catalog.writeRecord(rec);
    await store.put(layout.snapshotObject('c1', rec.name), 'x');
    let bucketDown = false;
    const etcd = { down: new Set<string>(), leader: '1' };
    const gw = fakeEtcd(etcd);
    let now = NOW;
    const collector = new MetricsCollector({
      cluster: 'c1',
      catalog: () => {
        if (bucketDown) throw new Error('connect ECONNREFUSED');
        return catalog;
      },
      etcd: () => gw,
      rpoTargetSeconds: 3600,
      refreshMs: 30_000,
      now: () => now,
    });
    const scrape = async () => {
      const f = parseExposition(await collector.render());
      return (name: string, labels: Record<string, string> = {}) => f.get(`etcd_recover_${name}`)?.samples.find((s) => Object.entries(labels).every(([k, x]) => s.labels[k] === x))?.value;
    };
    let v = await scrape();
    assert.equal(v('backup_last_revision'), rec.revision);
    assert.equal(v('bucket_up'), 1);
    assert.equal(v('quorum'), 1);
    assert.equal(v('member_is_leader', { member: 'etcd-0' }), 1, 'names from etcd\'s member list');
    assert.equal(v('job_consecutive_failures', { job: 'backup' }), 0);

    bucketDown = true;
    etcd.down.add('http://m1');
    etcd.leader = '3';
    now += 10_000;
    v = await scrape();
    assert.equal(v('bucket_up'), 1, 'within --refresh the cached scrape is served');
    now += 30_000;
    v = await scrape();
    assert.equal(v('bucket_up'), 0);
    assert.equal(v('backup_last_revision'), rec.revision, 'the last good value is kept');
    assert.equal(v('bucket_last_success_timestamp_seconds'), NOW / 1000);
    assert.equal(v('exporter_scrape_errors_total', { source: 'bucket' }), 1);
    assert.equal(v('member_up', { member: 'etcd-1' }), 0);
    assert.equal(v('member_db_size_bytes', { member: 'etcd-1' }), 2000, 'its last size is kept');
    assert.equal(v('leader_changes_total'), 1);
    assert.equal(v('member_is_leader', { member: 'etcd-2' }), 1);
    assert.equal(v('quorum'), 1);

    etcd.down = new Set(['http://m0', 'http://m1', 'http://m2']);
    now += 2 * HOUR;
    v = await scrape();
    assert.equal(v('etcd_up'), 0);
    assert.equal(v('quorum'), 0);
    assert.equal(v('exporter_scrape_errors_total', { source: 'etcd' }), 1);
    assert.equal(v('exporter_scrape_errors_total', { source: 'bucket' }), 2);
    assert.equal(v('rpo_met'), 0, 'the kept backup ages with the clock');
  });
});
