import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { crc32c, crc32cCombine, crc32cJs, crc32cNative } from '../../../packages/core/src/crc32c.js';
import {
  SnapshotVerifier,
  describeDefects,
  verifySnapshotFile,
  verifySnapshotStream,
  setFileHasher,
  hashFile,
  digestsToJson,
  digestsFromJson,
  type DefectCode,
  type SnapshotReport,
  type VerifyOptions,
} from '../../../packages/core/src/snapshot/verifier/index.js';
import {
  boltLayout,
  etcdutlStatus,
  etcdutlStatusError,
  flipByte,
  snapshotFixture,
  withFreelist,
  type EtcdutlStatus,
  type SnapshotFixture,
} from '../../support/snapshot-fixtures.js';

function verifyBytes(bytes: Uint8Array, opts?: VerifyOptions, chunk = 64 * 1024): SnapshotReport {
  const v = new SnapshotVerifier(opts);
  for (let i = 0; i < bytes.length; i += chunk) v.update(bytes.subarray(i, i + chunk));
  return v.finish();
}

function defect(r: SnapshotReport, code: DefectCode) {
  return r.defects.find((d) => d.code === code);
}

/** Asserts a fatal defect `code` (on `page` when given) whose reason matches `re`. */
function assertFatal(r: SnapshotReport, code: DefectCode, re: RegExp, page?: number): void {
  assert.equal(r.ok, false, `expected ok=false:\n${describeDefects(r)}`);
  const ds = r.defects.filter((d) => d.code === code && (page === undefined || d.page === page));
  assert.ok(ds.length > 0, `expected ${code}${page !== undefined ? ` on page ${page}` : ''}, got:\n${describeDefects(r)}`);
  assert.ok(ds.every((d) => d.fatal));
  assert.ok(ds.some((d) => re.test(d.reason)), `no ${code} reason matches ${re}:\n${describeDefects(r)}`);
  if (page !== undefined) assert.match(describeDefects(r), new RegExp(`${code} \\(fatal\\) page ${page}: `));
}

function assertMatchesEtcdutl(r: SnapshotReport, s: EtcdutlStatus): void {
  assert.deepEqual(
    { hash: r.hash, revision: r.revision, totalKey: r.totalKeys, totalSize: r.totalSize, version: r.version },
    { hash: s.hash, revision: s.revision, totalKey: s.totalKey, totalSize: s.totalSize, version: s.version },
  );
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('snapshot verifier', function () {
  this.timeout(60_000);

  describe('crc32c', () => {
    it('gives the standard check value, natively and in pure JS', () => {
      const v = Buffer.from('123456789');
      assert.equal(crc32c(v), 0xe3069283);
      assert.equal(crc32cJs(v), 0xe3069283);
      assert.equal(crc32cNative(), true, 'the @node-rs/crc32 binding should be in use');
    });

    it('native and pure-JS implementations agree, including chaining', () => {
      for (const n of [0, 1, 7, 8, 9, 63, 64, 1000, 4096, 65_537]) {
        const a = randomBytes(n);
        const b = randomBytes((n * 7) % 1013);
        assert.equal(crc32c(a), crc32cJs(a), `length ${n}`);
        assert.equal(crc32c(b, crc32c(a)), crc32cJs(Buffer.concat([a, b])));
        assert.equal(crc32cJs(b, crc32cJs(a)), crc32c(Buffer.concat([a, b])));
      }
    });

    it('crc32cCombine(crc(A), crc(B), len(B)) = crc(A‖B)', () => {
      const lens = [0, 1, 2, 3, 16, 17, 255, 4096, 4080, 100_000, 1 << 20];
      for (const la of [0, 1, 33, 4096]) {
        for (const lb of lens) {
          const a = randomBytes(la);
          const b = randomBytes(lb);
          assert.equal(crc32cCombine(crc32c(a), crc32c(b), lb), crc32c(Buffer.concat([a, b])), `${la}+${lb}`);
        }
      }
      // Folding many pieces, as the verifier does per leaf page.
      const parts = Array.from({ length: 50 }, (_, i) => randomBytes((i * 977) % 5000));
      let acc = 0;
      for (const p of parts) acc = crc32cCombine(acc, crc32c(p), p.length);
      assert.equal(acc, crc32c(Buffer.concat(parts)));
    });
  });

  describe('on a real etcd snapshot', () => {
    let fx: SnapshotFixture;
    let snap: Buffer;
    let raw: Buffer;
    let base: SnapshotReport;

    before(async function () {
      this.timeout(60_000);
      fx = await snapshotFixture();
      snap = await readFile(fx.snapshot);
      raw = await readFile(fx.raw);
      base = await verifySnapshotFile(fx.snapshot);
    });

    after(async () => {
      await fx?.cleanup();
    });

    it('tells a snapshot taken with a compaction pending (as a --mark-compacted restore leaves it) from a compacted one', async function () {
      this.timeout(60_000);
      assert.equal(base.compactionPending, false);
      const { execFile } = await import('node:child_process');
      const { promisify } = await import('node:util');
      const { etcdBinDir } = await import('../../support/snapshot-fixtures.js');
      const dataDir = join(fx.dir, 'restored-pending');
      await promisify(execFile)(join(etcdBinDir(), 'etcdutl'), ['snapshot', 'restore', fx.snapshot, '--data-dir', dataDir, '--bump-revision', '1000', '--mark-compacted']);
      const restored = await verifySnapshotFile(join(dataDir, 'member', 'snap', 'db'));
      assert.equal(restored.ok, true, describeDefects(restored));
      assert.equal(restored.compactionPending, true, 'scheduledCompactRev is past finishedCompactRev until etcd runs the compaction');
    });

    it('reports what `etcdutl snapshot status` reports, and a matching sha256 trailer', () => {
      assert.equal(base.ok, true, describeDefects(base));
      assert.deepEqual(base.defects, []);
      assertMatchesEtcdutl(base, fx.status);
      assert.equal(base.version, '3.6.0');
      assert.equal(base.hasTrailer, true);
      assert.equal(base.fileSize, snap.length);
      assert.equal(base.sha256, sha256(snap.subarray(0, snap.length - 32)));
      assert.equal(base.trailerSha256, base.sha256);
      assert.equal(base.pages * base.pageSize, base.totalSize);
      assert.equal(base.pageSize, 4096);
      assert.ok(base.txid > 0);
      // The fixture has history, tombstones and a compaction: the `key`
      // bucket holds more revisions than there are live keys.
      assert.ok(base.buckets['key']! > base.totalKeys, JSON.stringify(base.buckets));
      for (const b of ['alarm', 'auth', 'cluster', 'key', 'lease', 'members', 'meta']) assert.ok(b in base.buckets, b);
    });

    it('reports the same for the raw database without the trailer', async () => {
      const r = await verifySnapshotFile(fx.raw);
      assertMatchesEtcdutl(r, fx.rawStatus);
      assertMatchesEtcdutl(r, fx.status);
      assert.equal(r.ok, true);
      assert.equal(r.hasTrailer, false);
      assert.equal(r.trailerSha256, undefined);
      assert.equal(r.sha256, sha256(raw));
      assert.equal(r.sha256, base.sha256);
      assert.deepEqual(r.defects.map((d) => [d.code, d.fatal]), [['TRAILER_MISSING', false]]);

      const strict = await verifySnapshotFile(fx.raw, { requireTrailer: true });
      assertFatal(strict, 'TRAILER_MISSING', /no sha256 trailer/);
      assert.equal(strict.hash, fx.status.hash);
    });

    it('handles an inline `key` bucket (fresh cluster)', async () => {
      const r = await verifySnapshotFile(fx.small);
      assert.equal(r.ok, true, describeDefects(r));
      assertMatchesEtcdutl(r, fx.smallStatus);
      assert.equal(r.totalKeys, 2);
    });

    it('gives identical reports whatever the chunk sizes', async () => {
      for (const size of [1, 2, 3, 5, 7, 13, 31, 32, 33, 512, 4095, 4096, 4097, 65_536, 1 << 20]) {
        assert.deepEqual(verifyBytes(snap, {}, size), base, `chunks of ${size}`);
      }
      // Irregular chunks.
      const v = new SnapshotVerifier();
      let seed = 42;
      for (let i = 0; i < snap.length; ) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        const n = 1 + (seed % 20_000);
        v.update(snap.subarray(i, i + n));
        i += n;
      }
      assert.deepEqual(v.finish(), base);
      // The hash computed in a worker thread, and an async iterable source.
      assert.deepEqual(verifyBytes(snap, { parallelHash: true }, 100_000), base);
      assert.deepEqual(await verifySnapshotFile(fx.snapshot, { parallelHash: true }), base);
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < snap.length; i += 300_000) yield new Uint8Array(snap.subarray(i, i + 300_000));
      }
      assert.deepEqual(await verifySnapshotStream(chunks()), base);
      // Raw copy too (no trailer) in 1-byte chunks.
      assert.deepEqual(verifyBytes(raw, {}, 1), await verifySnapshotFile(fx.raw));
    });

    it('hashed in another process (the single executable\'s way): the same report; a hasher that fails is replaced by hashing here; a file that changed is an error', async () => {
      const calls: string[] = [];
      try {
        setFileHasher(async (path) => (calls.push(path), hashFile(path)));
        assert.deepEqual(await verifySnapshotFile(fx.snapshot, { parallelHash: true }), base);
        assert.deepEqual(await verifySnapshotFile(fx.raw, { parallelHash: true }), await verifySnapshotFile(fx.raw));
        assert.deepEqual(calls, [fx.snapshot, fx.raw]);
        // Small files without parallelHash never ask it.
        await verifySnapshotFile(fx.small);
        assert.equal(calls.length, 2);
        setFileHasher(async () => {
          throw new Error('cannot start');
        });
        assert.deepEqual(await verifySnapshotFile(fx.snapshot, { parallelHash: true }), base);
        // The other read saw other bytes (the file was rewritten between the two reads).
        setFileHasher(async (path) => {
          const d = hashFile(path);
          return { ...d, tail: Buffer.alloc(d.tail.length, 7) };
        });
        await assert.rejects(verifySnapshotFile(fx.snapshot, { parallelHash: true }), /the file changed while it was being verified/);
        setFileHasher(async (path) => ({ ...hashFile(path), size: 1 }));
        await assert.rejects(verifySnapshotFile(fx.snapshot, { parallelHash: true }), /the file changed while it was being verified \(read \d+ bytes, hashed 1\)/);
      } finally {
        setFileHasher(undefined);
      }
      // What the hashing process prints reads back the same; anything else is refused.
      const d = hashFile(fx.snapshot);
      assert.deepEqual(digestsFromJson(digestsToJson(d)), d);
      assert.throws(() => digestsFromJson('{"content":"zz","all":"","tail":"","size":1}'), /no valid "content"/);
    });

    describe('bad inputs', () => {
      it('an empty file: EMPTY', () => {
        const r = verifyBytes(new Uint8Array(0));
        assertFatal(r, 'EMPTY', /empty/);
        assert.equal(r.fileSize, 0);
      });

      it('a text file or random bytes: NOT_BBOLT', async () => {
        const text = join(fx.dir, 'notes.txt');
        await writeFile(text, 'this is a text file, not a snapshot\n'.repeat(200));
        assertFatal(await verifySnapshotFile(text), 'NOT_BBOLT', /not a bbolt database/);
        const rnd = verifyBytes(randomBytes(200_000));
        assertFatal(rnd, 'NOT_BBOLT', /not a bbolt database/);
        assert.equal(rnd.defects.length, 1);
      });

      it('a gzip of a valid snapshot: GZIP', async () => {
        const gz = join(fx.dir, 'snap.db.gz');
        await writeFile(gz, gzipSync(snap));
        const r = await verifySnapshotFile(gz);
        assertFatal(r, 'GZIP', /gzip-compressed; gunzip it first/);
        assert.equal(r.defects.length, 1);
      });

      it('a truncated snapshot: TRUNCATED, naming where data is missing', () => {
        const half = verifyBytes(snap.subarray(0, Math.floor(snap.length / 2)));
        assertFatal(half, 'TRUNCATED', /file truncated: the meta page says \d+ pages/);
        assertFatal(half, 'TRUNCATED', /missing: the file ends before it/);
        // One page short (a raw copy cut at a page boundary).
        const short = verifyBytes(raw.subarray(0, raw.length - 4096));
        assertFatal(short, 'TRUNCATED', /4096 bytes missing/, base.pages - 1);
        // Shorter than the meta pages.
        assertFatal(verifyBytes(snap.subarray(0, 100)), 'TRUNCATED', /file truncated/);
      });

      it('a wrong trailer: TRAILER_MISMATCH; a missing one when required: TRAILER_MISSING', () => {
        const r = verifyBytes(flipByte(snap, snap.length - 1));
        assertFatal(r, 'TRAILER_MISMATCH', /sha256 trailer mismatch/);
        assert.equal(r.hash, base.hash);
        assert.equal(r.sha256, base.sha256);
        assert.notEqual(r.trailerSha256, base.sha256);
        assertFatal(verifyBytes(raw, { requireTrailer: true }), 'TRAILER_MISSING', /no sha256 trailer/);
      });

      it('a flipped value byte: TRAILER_MISMATCH with the trailer; undetectable without (but the hash moves, like etcdutl)', async () => {
        const L = boltLayout(raw);
        const pg = L.leaves('key')[3]!;
        const e = pg * L.pageSize + 16;
        const valueEnd = e + raw.readUInt32LE(e + 4) + raw.readUInt32LE(e + 8) + raw.readUInt32LE(e + 12);
        const withTrailer = verifyBytes(flipByte(snap, valueEnd - 1));
        assertFatal(withTrailer, 'TRAILER_MISMATCH', /the snapshot is corrupted/);
        assert.equal(withTrailer.defects.filter((d) => d.fatal).length, 1, describeDefects(withTrailer));
        // Without the trailer nothing structural changed: bbolt has no page checksums.
        const flipped = flipByte(raw, valueEnd - 1);
        const r = verifyBytes(flipped);
        assert.equal(r.ok, true);
        assert.notEqual(r.hash, base.hash);
        const file = join(fx.dir, 'value-flip.db');
        await writeFile(file, flipped);
        assertMatchesEtcdutl(r, await etcdutlStatus(file));
      });

      it('a flipped byte in one meta page: META_INVALID warning, bbolt falls back to the other', () => {
        for (const [off, page] of [
          [16 + 48, 0], // txid of meta 0
          [16 + 9, 0], // page size of meta 0: the page size is then found through meta 1
          [4096 + 16 + 40, 1], // high-water mark of meta 1
        ] as const) {
          const r = verifyBytes(flipByte(raw, off));
          assert.equal(r.ok, true, describeDefects(r));
          const d = defect(r, 'META_INVALID')!;
          assert.deepEqual([d.page, d.fatal], [page, false]);
          assert.match(d.reason, /checksum mismatch/);
          assert.deepEqual([r.hash, r.revision, r.totalKeys], [base.hash, base.revision, base.totalKeys]);
        }
        // With the trailer, the flip also breaks it.
        const t = verifyBytes(flipByte(snap, 16 + 48));
        assert.ok(defect(t, 'META_INVALID') && !defect(t, 'META_INVALID')!.fatal);
        assertFatal(t, 'TRAILER_MISMATCH', /mismatch/);
      });

      it('both meta pages invalid: fatal META_INVALID (etcdutl cannot open it either)', async () => {
        const b = flipByte(flipByte(raw, 16 + 48), 4096 + 16 + 48);
        assertFatal(verifyBytes(b), 'META_INVALID', /both meta pages are invalid/);
        const file = join(fx.dir, 'no-meta.db');
        await writeFile(file, b);
        assert.ok(await etcdutlStatusError(file));
      });
    });

    describe('structural corruption (raw copy, so only the structure can tell)', () => {
      let L: ReturnType<typeof boltLayout>;
      before(() => {
        L = boltLayout(raw);
      });
      const elem = (pg: number, i: number): number => pg * L.pageSize + 16 + 16 * i;
      const keyAt = (b: Buffer, pg: number, i: number): number => elem(pg, i) + b.readUInt32LE(elem(pg, i) + 4);
      async function etcdutlFails(b: Buffer, name: string): Promise<string> {
        const file = join(fx.dir, name);
        await writeFile(file, b);
        const err = await etcdutlStatusError(file);
        assert.ok(err, 'etcdutl should fail too');
        return err;
      }

      it('keys out of order within a leaf: KEY_ORDER on that page', async () => {
        const b = Buffer.from(raw);
        const pg = L.leaves('key')[5]!;
        b.fill(0, keyAt(b, pg, 1), keyAt(b, pg, 1) + 8); // revision of key[1] → 0 < key[0]
        assertFatal(verifyBytes(b), 'KEY_ORDER', /key order violated in leaf: key\[1\]=/, pg);
        // bbolt's own check finds the same (etcdutl even panics on it).
        assert.match(await etcdutlFails(b, 'key-order.db'), /key\[1\]=\(hex\)0000000000000000.* needs to be > \(found <\)/);
      });

      it('a leaf whose first key is below its separator in the parent: KEY_ORDER', async () => {
        const b = Buffer.from(raw);
        const pg = L.leaves('key')[7]!;
        b.fill(0, keyAt(b, pg, 0), keyAt(b, pg, 0) + 8);
        assertFatal(verifyBytes(b), 'KEY_ORDER', /first key .* is < the separator key/, pg);
        await etcdutlFails(b, 'key-order-2.db');
      });

      it('an element pointing outside its page: ELEMENT_BOUNDS', () => {
        const b = Buffer.from(raw);
        const pg = L.leaves('key')[2]!;
        b.writeUInt32LE(0x7fff0000, elem(pg, 1) + 4);
        assertFatal(verifyBytes(b), 'ELEMENT_BOUNDS', /leaf element 1 .* extends past the end of the page/, pg);
      });

      it('a page whose header carries another id: PAGE_ID_MISMATCH', () => {
        const b = Buffer.from(raw);
        const pg = L.leaves('key')[4]!;
        b.writeUInt32LE(pg + 1000, pg * L.pageSize);
        assertFatal(verifyBytes(b), 'PAGE_ID_MISMATCH', new RegExp(`header carries page id ${pg + 1000}`), pg);
      });

      it('a tree page that is not a branch or leaf: PAGE_TYPE', async () => {
        const b = Buffer.from(raw);
        const pg = L.leaves('key')[6]!;
        b.writeUInt16LE(0x10, pg * L.pageSize + 8);
        assertFatal(verifyBytes(b), 'PAGE_TYPE', /a freelist page where a branch or leaf page is expected/, pg);
        await etcdutlFails(b, 'page-type.db');
      });

      it('a child beyond the high-water mark: PAGE_OUT_OF_BOUNDS', () => {
        const b = Buffer.from(raw);
        const br = L.branches('key')[0]!;
        b.writeUInt32LE(L.hwm + 10, elem(br, 1) + 8);
        assertFatal(verifyBytes(b), 'PAGE_OUT_OF_BOUNDS', new RegExp(`referenced by page ${br} but beyond the high-water mark ${L.hwm}`), L.hwm + 10);
      });

      it('a page referenced twice: PAGE_DOUBLE_REF', async () => {
        const b = Buffer.from(raw);
        const br = L.branches('key')[0]!;
        const child0 = b.readUInt32LE(elem(br, 0) + 8);
        b.writeUInt32LE(child0, elem(br, 1) + 8);
        assertFatal(verifyBytes(b), 'PAGE_DOUBLE_REF', /multiple references/, child0);
        assert.match(await etcdutlFails(b, 'double-ref.db'), /multiple references/);
      });

      it('a missing etcd bucket: BUCKET_MISSING', () => {
        const b = Buffer.from(raw);
        const meta = L.buckets.get('meta')!;
        b.write('mezz', meta.valueOffset - 4, 'latin1'); // still sorted after "members_removed"
        assertFatal(verifyBytes(b), 'BUCKET_MISSING', /bucket "meta" is missing/);
      });

      describe('with a persisted freelist', () => {
        let free: number[];
        let at: number;
        before(() => {
          const all = Array.from({ length: L.hwm - 2 }, (_, i) => i + 2).filter((p) => !L.reachable.has(p));
          at = all[0]!;
          free = all.slice(1);
          assert.ok(free.length > 3, 'the fixture should have free pages');
        });

        it('is accepted when every page is reachable or free (as etcdutl does)', async () => {
          const b = withFreelist(raw, at, free);
          const r = verifyBytes(b);
          assert.equal(r.ok, true, describeDefects(r));
          const file = join(fx.dir, 'freelist.db');
          await writeFile(file, b);
          assertMatchesEtcdutl(r, await etcdutlStatus(file));
          assert.equal(r.hash, base.hash);
        });

        it('a leaked page (neither reachable nor free): PAGE_UNREACHABLE', async () => {
          const leaked = free[2]!;
          const b = withFreelist(raw, at, free.filter((p) => p !== leaked));
          assertFatal(verifyBytes(b), 'PAGE_UNREACHABLE', /unreachable and not in the freelist/, leaked);
          assert.match(await etcdutlFails(b, 'leaked.db'), new RegExp(`page ${leaked}: unreachable unfreed`));
        });

        it('a reachable page listed as free: PAGE_DOUBLE_REF', async () => {
          const used = L.leaves('key')[3]!;
          const b = withFreelist(raw, at, [...free, used]);
          assertFatal(verifyBytes(b), 'PAGE_DOUBLE_REF', /also listed in the freelist/, used);
          assert.match(await etcdutlFails(b, 'reachable-freed.db'), new RegExp(`page ${used}: reachable freed`));
        });
      });

      it('caps the defect list and says how many more there are', () => {
        const b = Buffer.from(raw);
        const leaves = L.leaves('key');
        assert.ok(leaves.length > 110);
        for (const pg of leaves) b.writeUInt32LE(pg + 100_000, pg * L.pageSize);
        const r = verifyBytes(b);
        assert.equal(r.ok, false);
        assert.equal(r.defects.length, 100);
        assert.ok(r.omittedDefects! >= leaves.length - 100);
        const text = describeDefects(r);
        assert.equal(text.split('\n').length, 101);
        assert.match(text, new RegExp(`… and ${r.omittedDefects} more defect\\(s\\) not listed$`));
      });
    });
  });
});
