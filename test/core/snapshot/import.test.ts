import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { generateX25519Identity } from 'age-encryption';
import {
  AgeKeys,
  ByteReader,
  Catalog,
  EtcdRecoverError,
  LzwDecoder,
  MemberCatcher,
  MemoryObjectStore,
  exportBackup,
  fetchVerifiedSnapshot,
  findSnapshot,
  importBackup,
  openSource,
  readSnapshot,
  sniff,
  tarEntries,
  timeFromName,
  verifyInBucket,
  zipEntries,
  type SnapshotRecord,
} from '@etcd-recover/core';
import { compressZ, goCompress, goZip, gzipFile, pythonZlib, tarFiles, zipFiles } from '../../support/archive-fixtures.js';
import { etcdBinDir, saveSnapshot, snapshotFixture, startEtcd, type SnapshotFixture } from '../../support/snapshot-fixtures.js';

async function collect(src: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of src) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}
async function* chunks(b: Buffer, n = 65536): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += n) yield b.subarray(i, i + n);
}
function lzw(b: Buffer, dialect: 'go' | 'compress', piece = 7777): Buffer {
  const d = new LzwDecoder(dialect);
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += piece) d.push(b.subarray(i, i + piece), (x) => out.push(Buffer.from(x)));
  return Buffer.concat(out);
}
async function rejects(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof EtcdRecoverError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

describe('backup import: readers and detectors on real snapshots and real tools', function () {
  this.timeout(120_000);
  let fx: SnapshotFixture;
  let dir: string;
  let snap: Buffer;
  const at = (...p: string[]) => join(dir, ...p);

  before(async () => {
    fx = await snapshotFixture();
    snap = readFileSync(fx.snapshot);
    dir = mkdtempSync(join(tmpdir(), 'import-unit-'));
    mkdirSync(at('lt'));
    writeFileSync(at('lt', 'note.txt'), 'x'.repeat(1000));
    mkdirSync(at('okd'));
    tarFiles(at('okd', 'static_kuberesources_2021-04-14_123040.tar.gz'), at('lt'), ['note.txt']);
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await fx?.cleanup();
  });

  it('LZW: decodes Go compress/lzw (Gardener) and Unix compress, checked against gzip -d', () => {
    goCompress('lzw', fx.snapshot, at('go.lzw'));
    assert.ok(lzw(readFileSync(at('go.lzw')), 'go').equals(snap));
    for (const opts of [{ maxBits: 16 }, { maxBits: 12, clearWhenFull: true }]) {
      const z = compressZ(snap, opts);
      writeFileSync(at('s.Z'), z);
      assert.ok(execFileSync('gzip', ['-dc', at('s.Z')], { maxBuffer: 1 << 28 }).equals(snap), `gzip -d reads our .Z (${JSON.stringify(opts)})`);
      assert.ok(lzw(z, 'compress', 1000).equals(snap), `decoded .Z (${JSON.stringify(opts)})`);
    }
    assert.throws(() => lzw(Buffer.from([0x1f, 0x9d, 0x90, 0xff, 0xff, 0xff]), 'compress'), /invalid LZW data/);
  });

  it('sniffs by content, not by name: bbolt, gzip, zlib, Go LZW, compress, tar, zip, and what is none of them', () => {
    const head = (f: string) => readFileSync(f).subarray(0, 65536);
    goCompress('gzip', fx.snapshot, at('g.bin'));
    goCompress('zlib', fx.snapshot, at('z.bin'));
    pythonZlib(fx.snapshot, at('pz.bin'));
    writeFileSync(at('c.bin'), compressZ(snap));
    mkdirSync(at('t'), { recursive: true });
    copyFileSync(fx.snapshot, at('t', 'etcd-dump.bin'));
    tarFiles(at('tgz.bin'), at('t'), ['etcd-dump.bin']);
    tarFiles(at('tar.bin'), at('t'), ['etcd-dump.bin'], false);
    zipFiles(at('zip.zip'), [fx.snapshot]);
    assert.deepEqual(sniff(head(fx.snapshot)), { content: 'bbolt' });
    assert.deepEqual(sniff(head(fx.raw)), { content: 'bbolt' });
    assert.deepEqual(sniff(head(at('g.bin'))), { codec: 'gzip', content: 'bbolt' });
    assert.deepEqual(sniff(head(at('z.bin'))), { codec: 'zlib', content: 'bbolt' });
    assert.deepEqual(sniff(head(at('pz.bin'))), { codec: 'zlib', content: 'bbolt' });
    assert.deepEqual(sniff(head(at('go.lzw'))), { codec: 'lzw', content: 'bbolt' });
    assert.deepEqual(sniff(head(at('c.bin'))), { codec: 'compress', content: 'bbolt' });
    assert.deepEqual(sniff(head(at('tgz.bin'))), { codec: 'gzip', content: 'tar' });
    assert.deepEqual(sniff(head(at('tar.bin'))), { content: 'tar' });
    assert.deepEqual(sniff(head(at('zip.zip'))), { content: 'zip' });
    assert.deepEqual(sniff(gzipSync(Buffer.from('hello, not a snapshot'))), { codec: 'gzip', content: 'unknown' });
    assert.deepEqual(sniff(Buffer.from('{"etcdVersion":"3.5.9"}')), { content: 'unknown' });
    assert.equal(timeFromName('etcd-backup-2020-02-04-18-50-03.tar.gz')?.toISOString(), '2020-02-04T18:50:03.000Z');
    assert.equal(timeFromName('snapshot_2021-04-14_123040.db')?.toISOString(), '2021-04-14T12:30:40.000Z');
    assert.equal(timeFromName('Full-00000000-0000a2c1-1700000000.gz')?.toISOString(), '2023-11-14T22:13:20.000Z');
    assert.equal(timeFromName('etcd-snapshot-server-0-1700000000.zip')?.toISOString(), '2023-11-14T22:13:20.000Z');
  });

  it('tar: streams entries (GNU long names, folders) from tar -czf; a cut archive is refused', async () => {
    const long = 'd'.repeat(60) + '/' + 'e'.repeat(60);
    mkdirSync(at('lt', long), { recursive: true });
    copyFileSync(fx.snapshot, at('lt', long, 'etcd-dump.bin'));
    tarFiles(at('long.tar'), at('lt'), ['note.txt', 'd'.repeat(60)], false);
    const seen: [string, string, number][] = [];
    for await (const e of tarEntries(new ByteReader(chunks(readFileSync(at('long.tar')), 1000)), 'long.tar')) {
      if (e.type === 'file') seen.push([e.name, e.type, (await collect(e.body())).length]);
    }
    assert.deepEqual(seen, [['note.txt', 'file', 1000], [`${long}/etcd-dump.bin`, 'file', snap.length]]);
    const cut = readFileSync(at('long.tar')).subarray(0, 200_000);
    await assert.rejects(async () => {
      for await (const e of tarEntries(new ByteReader(chunks(cut)), 'cut.tar')) await collect(e.body());
    }, /truncated/);
  });

  it('zip: Info-ZIP (sizes in the headers) and Go archive/zip (data descriptors), CRC checked; a cut archive is refused', async () => {
    goZip(at('go.zip'), [[fx.snapshot, 'etcd-snapshot-a-1700000000'], [at('lt', 'note.txt'), 'note.txt']]);
    zipFiles(at('info.zip'), [fx.raw, at('lt', 'note.txt')]);
    for (const [f, names] of [['go.zip', ['etcd-snapshot-a-1700000000', 'note.txt']], ['info.zip', ['raw.db', 'note.txt']]] as const) {
      const got: [string, number][] = [];
      // The first entry read, the second left unread (skipped by the reader).
      let i = 0;
      for await (const e of zipEntries(new ByteReader(chunks(readFileSync(at(f)), 3000)), f)) got.push([e.name, i++ === 0 ? (await collect(e.body())).length : -1]);
      assert.deepEqual(got, [[names[0], names[0] === 'raw.db' ? statSync(fx.raw).size : snap.length], [names[1], -1]]);
    }
    const bytes = readFileSync(at('go.zip'));
    for (const cut of [bytes.subarray(0, 5000), bytes.subarray(0, bytes.length - 30)]) {
      await assert.rejects(async () => {
        for await (const e of zipEntries(new ByteReader(chunks(cut)), 'cut.zip')) await collect(e.body());
      }, /truncated/);
    }
    const damaged = Buffer.from(readFileSync(at('info.zip')));
    damaged[200] ^= 0xff;
    await assert.rejects(async () => {
      for await (const e of zipEntries(new ByteReader(chunks(damaged)), 'bad.zip')) await collect(e.body());
    }, /CRC-32|invalid|damaged/);
  });

  it("derives etcd's cluster ID from the snapshot's member list, streamed in any chunk size", async () => {
    const etcd = await startEtcd();
    try {
      const out = execFileSync(join(etcdBinDir(), 'etcdctl'), ['--endpoints', etcd.endpoint, 'endpoint', 'status', '-w', 'fields'], { encoding: 'utf8' });
      const clusterId = BigInt(/"ClusterID" : (\d+)/.exec(out)![1]!).toString(16);
      const file = join(etcd.dataDir, 's.db');
      await saveSnapshot(etcd.endpoint, file);
      const b = readFileSync(file);
      for (const n of [b.length, 4096, 777, 13]) {
        const m = new MemberCatcher();
        for (let i = 0; i < b.length; i += n) m.update(b.subarray(i, i + n));
        const list = m.finish();
        assert.ok(list, m.problem);
        assert.equal(list.derivedClusterId, clusterId, `chunks of ${n}`);
        assert.deepEqual(list.names, ['t']);
      }
    } finally {
      await etcd.stop();
    }
  });

  it('finds the one snapshot of each layout, and refuses two, none, or a missing inner file naming what is there', async () => {
    mkdirSync(at('csm', 'etcd-backup-2020-02-04-18-50-03'), { recursive: true });
    copyFileSync(fx.snapshot, at('csm', 'etcd-backup-2020-02-04-18-50-03', 'etcd-dump.bin'));
    tarFiles(at('etcd-backup-2020-02-04-18-50-03.tar.gz'), at('csm'), ['etcd-backup-2020-02-04-18-50-03']);
    const f = await findSnapshot(await openSource(at('etcd-backup-2020-02-04-18-50-03.tar.gz')));
    assert.equal(f.tool, 'csm');
    assert.equal(f.innerName, 'etcd-backup-2020-02-04-18-50-03/etcd-dump.bin');
    assert.equal(f.originalTime?.toISOString(), '2020-02-04T18:50:03.000Z');
    assert.ok((await collect(f.snapshot())).equals(snap));

    writeFileSync(at('csm', 'etcd-backup-2020-02-04-18-50-03', 'second.db'), readFileSync(fx.raw));
    tarFiles(at('two.tar.gz'), at('csm'), ['etcd-backup-2020-02-04-18-50-03']);
    const two = await findSnapshot(await openSource(at('two.tar.gz')));
    await rejects(collect(two.snapshot()), 'USAGE', /holds two snapshots, .*(etcd-dump\.bin and .*second\.db|second\.db and .*etcd-dump\.bin)/);

    mkdirSync(at('empty', 'etcd-backup-2020-02-04-19-00-00'), { recursive: true });
    writeFileSync(at('empty', 'etcd-backup-2020-02-04-19-00-00', 'README'), 'nothing');
    tarFiles(at('etcd-backup-2020-02-04-19-00-00.tar.gz'), at('empty'), ['etcd-backup-2020-02-04-19-00-00']);
    await rejects(openSource(at('etcd-backup-2020-02-04-19-00-00.tar.gz')).then(findSnapshot), 'SNAPSHOT_NOT_FOUND', /CSM tarball .* has no etcd-backup-2020-02-04-19-00-00\/etcd-dump\.bin .*README/);

    await rejects(openSource(at('okd')).then(findSnapshot), 'SNAPSHOT_NOT_FOUND', /OKD backup folder .* has static_kuberesources_2021-04-14_123040\.tar\.gz but no snapshot_<timestamp>\.db/);
    mkdirSync(at('okd2'));
    copyFileSync(at('okd', 'static_kuberesources_2021-04-14_123040.tar.gz'), at('okd2', 'static_kuberesources_2021-04-14_123040.tar.gz'));
    copyFileSync(fx.snapshot, at('okd2', 'snapshot_2021-04-14_123040.db'));
    const okd = await findSnapshot(await openSource(at('okd2')));
    assert.equal(okd.tool, 'okd');
    assert.deepEqual(okd.extras.map((x) => x.name), ['static_kuberesources_2021-04-14_123040.tar.gz']);

    mkdirSync(at('kops'));
    gzipFile(fx.snapshot, at('kops', 'etcd.backup.gz'));
    writeFileSync(at('kops', '_etcd_backup.meta'), JSON.stringify({ etcdVersion: '3.5.9', timestamp: 1700000000 }));
    const kops = await findSnapshot(await openSource(at('kops')));
    assert.deepEqual([kops.tool, kops.etcdVersion, kops.originalTime?.toISOString(), kops.extras.map((x) => x.name)], ['kops', '3.5.9', '2023-11-14T22:13:20.000Z', ['_etcd_backup.meta']]);
    assert.ok((await collect(kops.snapshot())).equals(snap));

    writeFileSync(at('notsnap.gz'), gzipSync(Buffer.from('this is a log file, not a snapshot\n'.repeat(100))));
    await rejects(openSource(at('notsnap.gz')).then(findSnapshot), 'SNAPSHOT_CORRUPT', /gzip-compressed, but what it holds is not an etcd snapshot/);
  });

  it('imports a raw copy with hasTrailer false; verify and the restore fetch accept it without trailer, but only it', async () => {
    const catalog = new Catalog(new MemoryObjectStore(), 'unit');
    const r = await importBackup({ catalog, source: await openSource(fx.raw) });
    const rec = r.record!;
    assert.equal(r.tool, 'raw-db');
    assert.equal(rec.hasTrailer, false);
    assert.ok(rec.provenance!.notes.some((n) => n.startsWith('no trailer: integrity not proven')));
    assert.equal((await verifyInBucket(catalog, rec.name)).ok, true);
    const got = await fetchVerifiedSnapshot(catalog, rec, at('fetched', 'raw.db'));
    assert.equal(got.totalKeys, fx.rawStatus.totalKey);
    // The same bytes under a record that does not say "no trailer" are refused, as every normal backup.
    const strict: SnapshotRecord = { ...rec };
    delete strict.hasTrailer;
    await rejects(fetchVerifiedSnapshot(catalog, strict, at('fetched', 'strict.db')), 'SNAPSHOT_CORRUPT', /TRAILER_MISSING/);
    assert.equal(existsSync(at('fetched', 'strict.db')), false);
  });

  it('encrypts an import for the catalog keys and keeps its extras beside it (encrypted); export writes the plain snapshot back', async () => {
    const keys = await AgeKeys.parse({ identities: await generateX25519Identity(), source: 'test' });
    const catalog = new Catalog(new MemoryObjectStore(), 'enc', keys);
    const r = await importBackup({ catalog, source: await openSource(at('okd2')) });
    const rec = r.record!;
    assert.equal(rec.encryption?.format, 'age');
    assert.equal(rec.formatVersion, 2);
    assert.ok((await collect(readSnapshot(catalog, rec))).equals(snap));
    const extra = rec.provenance!.extras![0]!;
    assert.equal(extra.encrypted, true);
    const stored = (await catalog.store.read(extra.objectKey))!.body;
    assert.ok(stored.subarray(0, 21).toString() === 'age-encryption.org/v1', 'the static resources are stored encrypted');
    const out = at('export', 'snap.db');
    mkdirSync(at('export'));
    const e = await exportBackup(catalog, rec.name, out);
    assert.ok(readFileSync(out).equals(snap), 'exported bytes are the snapshot as etcdctl saved it');
    assert.equal(e.hasTrailer, true);
    await rejects(exportBackup(catalog, rec.name, out), 'PRECONDITION', /exists: refusing to overwrite/);
  });

  it("refuses a snapshot of another cluster than the catalog's backups unless forced", async () => {
    const catalog = new Catalog(new MemoryObjectStore(), 'foreign');
    const first = await importBackup({ catalog, source: await openSource(fx.snapshot) });
    // A backup of some other cluster: the catalog now knows its ID only.
    await catalog.writeRecord({ ...first.record!, clusterId: 'abcdef0123456789' });
    await rejects(importBackup({ catalog, source: await openSource(fx.raw) }), 'SNAPSHOT_FOREIGN', /cluster ID .* is none this cluster had .*abcdef0123456789/);
    assert.equal((await catalog.list()).snapshots.length, 1, 'nothing left behind');
    assert.equal((await catalog.list()).incomplete.length, 0);
    const forced = await importBackup({ catalog, source: await openSource(fx.raw), forceForeign: true });
    assert.ok(forced.notes.some((n) => n.startsWith('imported with --force-foreign')));
    const given = await importBackup({ catalog, source: await openSource(at('okd2')), clusterId: 'ABCDEF0123456789', dryRun: true });
    assert.equal(given.clusterId, 'abcdef0123456789');
  });
});

