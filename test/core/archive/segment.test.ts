import { strict as assert } from 'node:assert';
import { gzipSync, gunzipSync } from 'node:zlib';
import { Catalog, MemoryObjectStore, applyRetention, choosePoint, pruneChains, decodeSegment, encodeSegment, layout, listChains, parseSegmentName, readSegment, segmentName, writeSegment, type ChainRecord, type RevisionBatch } from '@etcd-recover/core';

const batch = (revision: number, at = 1_764_700_000_000 + revision): RevisionBatch => ({
  revision,
  at,
  events: [
    { type: 'put', key: Buffer.from(`k/${revision}`), value: Buffer.from([0, 1, 2, revision & 255]), createRevision: revision, version: 1, ...(revision % 2 ? { lease: '7587886654389245123' } : {}) },
    { type: 'delete', key: Buffer.from(`k/${revision - 1}`) },
  ],
});

describe('archive segments', () => {
  it('round-trip every field of every event, binary values and int64 lease IDs included', () => {
    const batches = [batch(11), batch(12), batch(13)];
    const body = encodeSegment({ cluster: 'c', chain: 'x', batches, leases: { '7587886654389245123': 30 } });
    const d = decodeSegment(body, { key: 'x/seg', first: 11, last: 13 });
    assert.deepEqual(d.batches, batches);
    assert.deepEqual(d.header.leases, { '7587886654389245123': 30 });
    assert.equal(d.header.events, 6);
  });

  it('refuse a gap inside a segment, a flipped byte, a truncation, and a body that is not what its name says', () => {
    assert.throws(() => encodeSegment({ cluster: 'c', chain: 'x', batches: [batch(1), batch(3)], leases: {} }), /jump from 1 to 3/);
    const body = encodeSegment({ cluster: 'c', chain: 'x', batches: [batch(1), batch(2)], leases: {} });
    const text = gunzipSync(body);
    const flipped = Buffer.from(text);
    flipped[40] = flipped[40]! ^ 1;
    assert.throws(() => decodeSegment(gzipSync(flipped), { key: 's', first: 1, last: 2 }), (e: Error & { code?: string }) => e.code === 'SNAPSHOT_CORRUPT' && /revisions 1-2\) fails its checksum/.test(e.message));
    assert.throws(() => decodeSegment(body.subarray(0, body.length - 9), { key: 's', first: 1, last: 2 }), /cannot be decompressed/);
    assert.throws(() => decodeSegment(body, { key: 's', first: 1, last: 3 }), /not what its name says/);
  });

  it('names carry the range and times; a listing alone orders them', () => {
    const n = segmentName(5, 900, 1_764_700_000_000, 1_764_700_001_000);
    assert.equal(n, '0000000000000005-0000000000000900-1764700000000-1764700001000.seg');
    assert.deepEqual(parseSegmentName('x', `a/b/${n}`, 10), { key: `a/b/${n}`, chain: 'x', first: 5, last: 900, firstAt: 1_764_700_000_000, lastAt: 1_764_700_001_000, size: 10 });
    assert.equal(parseSegmentName('x', 'a/b/chain.json', 1), undefined);
  });
});

describe('archive chains', () => {
  const chain = (id: string, base: number, startedAt: string, previous?: ChainRecord['previous']): ChainRecord => ({
    format: 1, cluster: 'c', chain: id, clusterId: 'abc', base: { snapshot: `full-${id}`, revision: base, createdAt: startedAt }, startedAt, reason: previous ? 'compacted' : 'first', ...(previous ? { previous } : {}),
  });

  async function setup() {
    const catalog = new Catalog(new MemoryObjectStore(), 'c');
    const put = (r: ChainRecord) => catalog.store.put(layout.archiveChain('c', r.chain), JSON.stringify(r));
    await put(chain('a', 10, '2026-12-01T00:00:00.000Z'));
    const t0 = Date.parse('2026-12-01T00:00:00.000Z');
    for (const [f, l] of [[11, 20], [21, 30], [31, 40]] as const) await writeSegment(catalog, 'a', Array.from({ length: l - f + 1 }, (_, i) => batch(f + i, t0 + (f + i) * 1000)), {});
    await put(chain('b', 100, '2026-12-01T01:00:00.000Z', { chain: 'a', last: 40, lastAt: t0 + 40_000 }));
    return catalog;
  }

  it('restorable ranges, a point inside one, and the segments it replays', async () => {
    const catalog = await setup();
    const chains = await listChains(catalog.store, 'c');
    assert.deepEqual(chains.map((c) => [c.record.chain, c.record.base.revision, c.to, c.segments.length]), [['a', 10, 40, 3], ['b', 100, 100, 0]]);
    const p = choosePoint(chains, { revision: 25 });
    assert.ok('segments' in p);
    assert.deepEqual(p.segments.map((s) => s.first), [11, 21]);
    const seg = await readSegment(catalog, p.segments[1]!);
    assert.equal(seg.batches[4]!.revision, 25);
  });

  it('a missing segment is a hole: before it restores, inside and past it refuse naming the range', async () => {
    const catalog = await setup();
    const mid = (await listChains(catalog.store, 'c'))[0]!.segments[1]!;
    await catalog.store.delete(mid.key);
    const chains = await listChains(catalog.store, 'c');
    assert.deepEqual(chains[0]!.hole, { after: 20, next: 31 });
    assert.equal(chains[0]!.to, 20);
    assert.ok('segments' in choosePoint(chains, { revision: 20 }));
    assert.throws(() => choosePoint(chains, { revision: 35 }), /revision 35 is in no archive chain/);
    assert.throws(() => choosePoint(chains, { revision: 25 }), /missing revisions 21-30 .*restores up to revision 20/);
  });

  it('a time between two chains, or outside every chain, refuses naming the nearest points', async () => {
    const chains = await listChains((await setup()).store, 'c');
    assert.throws(() => choosePoint(chains, { time: new Date('2026-12-01T00:30:00Z') }), /in the gap between two archive chains: the newest point before it is revision 40 .*the next chain starts at revision 100/);
    assert.throws(() => choosePoint(chains, { time: new Date('2026-11-30T00:00:00Z') }), /outside every archive chain/);
    assert.throws(() => choosePoint(chains, { revision: 5 }), /revision 5 is in no archive chain; restorable ranges: chain a: revisions 10-40/);
  });

  it('retention over chains: a chain past the window goes (record, then segments), never the newest; only kept chains protect their base', async () => {
    const catalog = await setup();
    const now = new Date('2026-12-09T00:00:00Z');
    const dry = await pruneChains(catalog, { keepMs: 3_600_000, now, dryRun: true });
    assert.deepEqual(dry.pruned.map((c) => c.chain), ['a']);
    assert.deepEqual(dry.protectedBases, ['full-b']);
    assert.equal((await listChains(catalog.store, 'c')).length, 2, 'a dry run deletes nothing');
    const done = await pruneChains(catalog, { keepMs: 3_600_000, now, dryRun: false });
    assert.equal(done.pruned[0]!.segments, 3);
    assert.deepEqual((await listChains(catalog.store, 'c')).map((c) => c.record.chain), ['b']);
    let left = 0;
    for await (const _ of catalog.store.list('clusters/c/archive/a/')) left++;
    assert.equal(left, 0, 'its segments are gone too');
    assert.equal((await pruneChains(catalog, { keepMs: 1, now: new Date('2030-01-01T00:00:00Z'), dryRun: false })).pruned.length, 0, 'the newest chain stays');
    // Its base is a backup like any other once its chain is gone; the kept chain's base is outside retention.
    const rec = (name: string, createdAt: string) => ({ name, createdAt, revision: 1, labels: { reason: 'archive-base', chain: name.slice(5) }, verification: { ok: true, sha256: 'x' }, sha256: 'x' }) as never;
    const decisions = applyRetention([rec('full-a', '2026-11-01T00:00:00Z'), rec('full-b', '2026-11-01T00:00:01Z')], { keepLast: 0, keepAllWithin: 0, hourlyWithin: 0, dailyWithin: 0, weeklyWithin: 0, maxCount: 1 }, now, new Set(['full-b']));
    const by = Object.fromEntries(decisions.map((d) => [d.name, d]));
    assert.equal(by['full-b'].keep, true);
    assert.match(by['full-b'].reasons[0], /base snapshot of archive chain b/);
    assert.ok(!by['full-a'].reasons.some((r: string) => /archive chain/.test(r)), 'no longer protected by a chain');
    // A point-in-time build (older data, taken now) never pushes a real backup out of "the N newest".
    const real = { ...(rec('full-real', '2026-12-08T00:00:00Z') as object), labels: { reason: 'scheduled' } } as never;
    const pit = { ...(rec('full-pit', '2026-12-08T23:00:00Z') as object), labels: { reason: 'point-in-time', 'to-revision': '5' } } as never;
    const d2 = Object.fromEntries(applyRetention([real, pit], { keepLast: 1, keepAllWithin: 0, hourlyWithin: 0, dailyWithin: 0, weeklyWithin: 0 }, now, new Set()).map((d) => [d.name, d]));
    assert.equal(d2['full-real'].keep, true);
    assert.match(d2['full-real'].reasons.join(';'), /one of the 1 newest/);
    assert.equal(d2['full-pit'].keep, true);
    assert.match(d2['full-pit'].reasons[0], /point-in-time restore point/);
  });
});
