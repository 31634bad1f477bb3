import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { integrityProven, verifyLocalFile, type SnapshotReport } from '@etcd-recover/core';
import { snapshotFixture, type SnapshotFixture } from '../../support/snapshot-fixtures.js';

/** Local files: only whole pages, or whole pages plus the full 32-byte trailer, are sound lengths. */
describe('verifyLocalFile: the length of a local snapshot file', function () {
  this.timeout(60_000);
  let fx: SnapshotFixture;
  let snap: Buffer;
  let raw: Buffer;
  let ps: number;

  before(async () => {
    fx = await snapshotFixture();
    snap = await readFile(fx.snapshot);
    raw = await readFile(fx.raw);
    ps = (await verifyLocalFile(fx.raw)).pageSize;
  });
  after(async () => {
    await fx?.cleanup();
  });

  async function check(name: string, bytes: Buffer, opts: { requireTrailer?: boolean } = {}): Promise<SnapshotReport> {
    const f = join(fx.dir, `${name}.db`);
    await writeFile(f, bytes);
    return verifyLocalFile(f, opts);
  }

  function assertTruncated(r: SnapshotReport, len: number, what: string): void {
    assert.equal(r.ok, false, `${what}: refused`);
    const d = r.defects.find((x) => x.code === 'TRUNCATED' && x.reason.startsWith('file length'));
    assert.ok(d, `${what}: a TRUNCATED length defect (got ${r.defects.map((x) => x.reason).join(' | ')})`);
    assert.equal(d.fatal, true);
    assert.match(d.reason, new RegExp(`^file length ${len} bytes is neither whole ${ps}-byte pages .*\\(page size ${ps} from the meta page\\)`));
  }

  it('the fixture is what the rules are about: a snapshot is pages + 32 bytes, a raw copy whole pages', () => {
    assert.ok(ps >= 4096 && ps % 512 === 0, `page size ${ps}`);
    assert.equal(raw.length % ps, 0);
    assert.equal(snap.length, raw.length + 32);
  });

  it('accepts a whole snapshot (integrity proven) and a raw copy (intact, integrity not proven)', async () => {
    const s = await check('whole', snap);
    assert.equal(s.ok, true);
    assert.equal(integrityProven(s), true);
    const r = await check('raw', raw);
    assert.equal(r.ok, true);
    assert.equal(r.hasTrailer, false);
    assert.equal(integrityProven(r), false);
    // A raw copy bigger than the high-water mark (bbolt grows files in whole pages) is still whole pages.
    const grown = await check('grown', Buffer.concat([raw, Buffer.alloc(2 * ps)]));
    assert.equal(grown.ok, true, grown.defects.map((d) => d.reason).join(' | '));
  });

  it('refuses a snapshot whose trailer was cut short, at every length between the pages and the full trailer', async () => {
    for (const cut of [1, 2, 16, 31]) {
      const len = snap.length - cut;
      assertTruncated(await check(`trailer-minus-${cut}`, snap.subarray(0, len)), len, `trailer cut by ${cut}`);
    }
  });

  it('refuses a raw copy cut inside a page past the high-water mark (every page the meta page needs is there)', async () => {
    const grown = Buffer.concat([raw, Buffer.alloc(2 * ps)]);
    for (const len of [raw.length + 1, raw.length + 512 + 32, raw.length + ps + 100, raw.length + 2 * ps - 1]) {
      assertTruncated(await check(`grown-${len}`, grown.subarray(0, len)), len, `raw + ${len - raw.length}`);
    }
  });

  it('refuses a snapshot cut inside its pages, naming the length', async () => {
    for (const len of [snap.length - 33, snap.length - ps - 7, Math.floor(snap.length / 2) + 3]) {
      assertTruncated(await check(`cut-${len}`, snap.subarray(0, len)), len, `cut to ${len}`);
    }
  });

  it('a missing trailer is an error only when required', async () => {
    const r = await check('raw-required', raw, { requireTrailer: true });
    assert.equal(r.ok, false);
    assert.ok(r.defects.some((d) => d.code === 'TRAILER_MISSING' && d.fatal));
  });
});
