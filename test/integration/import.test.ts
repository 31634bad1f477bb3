import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Sandbox as SandboxClass, type ImportResult, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { goCompress, goZip, gzipFile, pythonZlib, tarFiles, zipFiles } from '../support/archive-fixtures.js';
import { binaries } from '../support/binaries.js';
import { json, runCli } from '../support/cli.js';
import { destroyMembers, readMember, startSandbox, stopSandbox, storeFor, tempDir, writeKeys } from '../support/sandbox.js';
import { saveSnapshot, startEtcd } from '../support/snapshot-fixtures.js';

interface Listed extends SnapshotRecord {
  trusted: boolean;
}

describe('backup import and export on a real 3-member etcd and MinIO', function () {
  this.timeout(600_000);
  let sb: Sandbox;
  const tmp = tempDir('etcd-recover-import-');
  const at = (...p: string[]) => join(tmp.path, ...p);
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);
  const reload = () => (sb = SandboxClass.load(sb.dir)!);
  let keys = 0;
  let n = 0;
  /** Writes a few more keys, then `etcdctl snapshot save`: each layout gets its own snapshot. */
  const snapshot = async (): Promise<{ file: string; keys: number; revision: number; totalKey: number }> => {
    await writeKeys(sb.endpoints(), 25, 'k/', 64, keys);
    keys += 25;
    const file = at(`etcdctl-${++n}.db`);
    await saveSnapshot(sb.endpoints()[0]!, file);
    const st = JSON.parse(execFileSync(binaries().etcdutl, ['snapshot', 'status', file, '-w', 'json']).toString()) as { revision: number; totalKey: number };
    return { file, keys, ...st };
  };
  const list = async (): Promise<{ snapshots: Listed[]; incomplete: unknown[] }> => json(await cli('backup', 'list', '--all', '-o', 'json'));
  const imported: Record<string, { name: string; keys: number; file: string }> = {};
  let clusterId = '';

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: 'import-it' });
    await writeKeys(sb.endpoints(), 1_000, 'k/');
    keys = 1_000;
    // A backup of the tool's own: the catalog knows this cluster's etcd ID.
    const own = await cli('backup', 'create', '-q', '-o', 'json');
    assert.equal(own.code, 0, own.stderr);
    clusterId = json<SnapshotRecord>(own).clusterId;
  });
  after(async () => {
    await stopSandbox(sb);
    tmp.remove();
  });

  it('imports every layout by its content, each an ordinary verified backup with its provenance', async () => {
    const layouts: { tool: string; build: (s: { file: string }) => string; inner?: string; extras?: string[] }[] = [
      { tool: 'etcdctl', build: (s) => s.file },
      {
        tool: 'raw-db',
        build: (s) => {
          const b = readFileSync(s.file);
          writeFileSync(at('db'), b.subarray(0, b.length - 32)); // what member/snap/db holds: no trailer
          return at('db');
        },
      },
      {
        tool: 'csm',
        inner: 'etcd-backup-2020-02-04-18-50-03/etcd-dump.bin',
        build: (s) => {
          mkdirSync(at('csm', 'etcd-backup-2020-02-04-18-50-03'), { recursive: true });
          copyFileSync(s.file, at('csm', 'etcd-backup-2020-02-04-18-50-03', 'etcd-dump.bin'));
          tarFiles(at('etcd-backup-2020-02-04-18-50-03.tar.gz'), at('csm'), ['etcd-backup-2020-02-04-18-50-03']);
          return at('etcd-backup-2020-02-04-18-50-03.tar.gz');
        },
      },
      {
        tool: 'okd',
        inner: 'snapshot_2021-04-14_123040.db',
        extras: ['static_kuberesources_2021-04-14_123040.tar.gz'],
        build: (s) => {
          mkdirSync(at('okd', 'static-pod-resources', 'etcd-pod-3'), { recursive: true });
          writeFileSync(at('okd', 'static-pod-resources', 'etcd-pod-3', 'pod.yaml'), 'apiVersion: v1\nkind: Pod\n');
          mkdirSync(at('backup'));
          copyFileSync(s.file, at('backup', 'snapshot_2021-04-14_123040.db'));
          tarFiles(at('backup', 'static_kuberesources_2021-04-14_123040.tar.gz'), at('okd'), ['static-pod-resources']);
          return at('backup');
        },
      },
      { tool: 'k3s', inner: 'etcd-snapshot-server-0-1700000000', build: (s) => (goZip(at('etcd-snapshot-server-0-1700000000.zip'), [[s.file, 'etcd-snapshot-server-0-1700000000']]), at('etcd-snapshot-server-0-1700000000.zip')) },
      { tool: 'gardener', build: (s) => (goCompress('gzip', s.file, at('Full-00000000-00001000-1700000100.gz')), at('Full-00000000-00001000-1700000100.gz')) },
      { tool: 'gardener', build: (s) => (pythonZlib(s.file, at('Full-00000000-00001000-1700000200.zlib')), at('Full-00000000-00001000-1700000200.zlib')) },
      { tool: 'gardener', build: (s) => (goCompress('lzw', s.file, at('Full-00000000-00001000-1700000300.Z')), at('Full-00000000-00001000-1700000300.Z')) },
      {
        tool: 'kops',
        inner: 'etcd.backup.gz',
        extras: ['_etcd_backup.meta'],
        build: (s) => {
          mkdirSync(at('2023-11-14T22:13:20Z'));
          gzipFile(s.file, at('2023-11-14T22:13:20Z', 'etcd.backup.gz'));
          writeFileSync(at('2023-11-14T22:13:20Z', '_etcd_backup.meta'), JSON.stringify({ etcdVersion: '3.6.16', timestamp: 1700000000 }));
          return at('2023-11-14T22:13:20Z');
        },
      },
    ];
    for (const l of layouts) {
      const s = await snapshot();
      const src = l.build(s);
      const r = await cli('backup', 'import', src, '-o', 'json');
      assert.equal(r.code, 0, `${l.tool} ${src}: ${r.stderr}`);
      const got = json<ImportResult>(r);
      const rec = got.record!;
      assert.equal(got.tool, l.tool, src);
      assert.equal(rec.provenance!.tool, l.tool);
      if (l.inner) assert.equal(rec.provenance!.innerName, l.inner);
      assert.deepEqual(rec.provenance!.extras?.map((x) => x.name) ?? [], l.extras ?? []);
      assert.equal(rec.revision, s.revision, `${l.tool}: revision as etcdutl says`);
      assert.equal(rec.totalKeys, s.totalKey, `${l.tool}: keys as etcdutl says`);
      assert.equal(rec.clusterId, clusterId, "the etcd cluster ID, derived from the snapshot's members, is this cluster's");
      assert.equal(got.clusterIdFrom, 'members');
      assert.equal(rec.hasTrailer, l.tool === 'raw-db' ? false : undefined);
      assert.ok(rec.provenance!.notes.some((x) => x.startsWith(l.tool === 'raw-db' ? 'no trailer: integrity not proven' : 'sha256 trailer present and matching')), rec.provenance!.notes.join('; '));
      assert.match(r.stderr, /found: /, 'progress on stderr');
      imported[`${l.tool}${l.tool === 'gardener' ? `-${rec.provenance!.compression}` : ''}`] = { name: rec.name, keys: s.keys, file: s.file };
    }
    const all = (await list()).snapshots;
    assert.equal(all.length, layouts.length + 1);
    assert.ok(all.every((b) => b.trusted && b.clusterId === clusterId));
    const v = await cli('backup', 'verify', '--all', '-o', 'json');
    assert.equal(v.code, 0, v.stderr);
    assert.ok(json(v).results.every((x: { ok: boolean }) => x.ok));
  });

  it('--dry-run says what it found and writes nothing', async () => {
    const s = await snapshot();
    mkdirSync(at('dry', 'etcd-backup-2021-01-01-00-00-00'), { recursive: true });
    copyFileSync(s.file, at('dry', 'etcd-backup-2021-01-01-00-00-00', 'etcd-dump.bin'));
    tarFiles(at('etcd-backup-2021-01-01-00-00-00.tar.gz'), at('dry'), ['etcd-backup-2021-01-01-00-00-00']);
    const before = (await list()).snapshots.length;
    const r = await cli('backup', 'import', at('etcd-backup-2021-01-01-00-00-00.tar.gz'), '--dry-run', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const d = json<ImportResult>(r);
    assert.deepEqual([d.dryRun, d.tool, d.innerName, d.compression, d.revision, d.totalKeys, d.snapshotBytes], [true, 'csm', 'etcd-backup-2021-01-01-00-00-00/etcd-dump.bin', 'tar+gzip', s.revision, s.totalKey, statSync(s.file).size]);
    assert.equal(d.record, undefined);
    const after = await list();
    assert.equal(after.snapshots.length, before);
    assert.equal(after.incomplete.length, 0);
    const human = await cli('backup', 'import', at('etcd-backup-2021-01-01-00-00-00.tar.gz'), '--dry-run');
    assert.match(human.stdout, /would import CSM bare-metal etcd backup \(tar\+gzip\) \(csm\)[\s\S]*nothing was written/);
  });

  it('quorum --snapshot restores an imported raw db copy (no trailer) on real etcd: every key present', async () => {
    const raw = imported['raw-db']!;
    await destroyMembers(sb, sb.state.members.map((m) => m.name));
    const r = await cli('quorum', '--snapshot', raw.name, '--yes', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    reload();
    for (const m of sb.state.members) {
      const { keys: got } = await readMember(m.clientURL, 'k/');
      assert.equal(Object.keys(got).length, raw.keys, `${m.name} holds every key of the imported snapshot`);
    }
  });

  it('backup drill restores an imported Gardener LZW snapshot', async () => {
    const r = await cli('backup', 'drill', imported['gardener-lzw']!.name, '--members', '1', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(json(r).keys >= imported['gardener-lzw']!.keys);
  });

  it('backup export writes the plain snapshot that bare etcdutl restores, and never overwrites', async () => {
    const csm = imported['csm']!;
    const file = at('exported.db');
    const r = await cli('backup', 'export', csm.name, file, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(file).equals(readFileSync(csm.file)), 'byte for byte what etcdctl snapshot save wrote');
    execFileSync(binaries().etcdutl, ['snapshot', 'restore', file, '--data-dir', at('restored')], { stdio: 'pipe' });
    assert.ok(existsSync(at('restored', 'member', 'snap', 'db')));
    assert.equal(existsSync(`${file}.part`), false);
    const again = await cli('backup', 'export', csm.name, file);
    assert.equal(again.code, 9, again.stderr);
    assert.match(again.stderr, /exists: refusing to overwrite/);
  });

  it('imports from another bucket (an object, and a kops folder under a prefix)', async () => {
    const other = storeFor(sb, { bucket: 'other-tool-backups', prefix: '' });
    await other.ensureBucket();
    const s = await snapshot();
    goCompress('gzip', s.file, at('Full-00000000-00002000-1700000400.gz'));
    await other.put('gardener/Full-00000000-00002000-1700000400.gz', readFileSync(at('Full-00000000-00002000-1700000400.gz')));
    const r = await cli('backup', 'import', 's3://other-tool-backups/gardener/Full-00000000-00002000-1700000400.gz', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([json<ImportResult>(r).tool, json<ImportResult>(r).revision], ['gardener', s.revision]);
    const k = await snapshot();
    await other.put('kops/backups/etcd/main/2023-11-15T00:00:00Z/etcd.backup.gz', gzipSync(readFileSync(k.file)));
    await other.put('kops/backups/etcd/main/2023-11-15T00:00:00Z/_etcd_backup.meta', JSON.stringify({ etcdVersion: '3.6.16', timestamp: 1700006400 }));
    const f = await cli('backup', 'import', 's3://other-tool-backups/kops/backups/etcd/main/2023-11-15T00:00:00Z/', '-o', 'json');
    assert.equal(f.code, 0, f.stderr);
    const rec = json<ImportResult>(f).record!;
    assert.deepEqual([rec.provenance!.tool, rec.etcdVersion, rec.createdAt, rec.provenance!.extras!.map((x) => x.name)], ['kops', '3.6.16', '2023-11-15T00:00:00.000Z', ['_etcd_backup.meta']]);
    other.destroy();
  });

  describe('bad input is refused, naming the problem, and leaves nothing behind', () => {
    let count = 0;
    beforeEach(async () => (count = (await list()).snapshots.length));
    afterEach(async () => {
      const l = await list();
      assert.equal(l.snapshots.length, count, 'no backup added');
      assert.equal(l.incomplete.length, 0, 'no object left behind');
    });

    it('an archive with two snapshots in it', async () => {
      const s = await snapshot();
      mkdirSync(at('two', 'etcd-backup-2022-01-01-00-00-00'), { recursive: true });
      copyFileSync(s.file, at('two', 'etcd-backup-2022-01-01-00-00-00', 'etcd-dump.bin'));
      copyFileSync(imported['etcdctl']!.file, at('two', 'etcd-backup-2022-01-01-00-00-00', 'older.db'));
      tarFiles(at('etcd-backup-2022-01-01-00-00-00.tar.gz'), at('two'), ['etcd-backup-2022-01-01-00-00-00']);
      const r = await cli('backup', 'import', at('etcd-backup-2022-01-01-00-00-00.tar.gz'));
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /holds two snapshots, .*(etcd-dump\.bin and .*older\.db|older\.db and .*etcd-dump\.bin)/);
    });

    it('a truncated tarball, and a truncated zip', async () => {
      const tgz = readFileSync(at('etcd-backup-2020-02-04-18-50-03.tar.gz'));
      writeFileSync(at('etcd-backup-2020-02-04-18-50-04.tar.gz'), tgz.subarray(0, Math.floor(tgz.length / 2)));
      const t = await cli('backup', 'import', at('etcd-backup-2020-02-04-18-50-04.tar.gz'));
      assert.equal(t.code, 3, t.stderr);
      assert.match(t.stderr, /truncated/);
      const s = await snapshot();
      zipFiles(at('etcd-snapshot-server-0-1700000500.zip'), [s.file]);
      const zip = readFileSync(at('etcd-snapshot-server-0-1700000500.zip'));
      writeFileSync(at('cut.zip'), zip.subarray(0, zip.length - 40));
      const z = await cli('backup', 'import', at('cut.zip'));
      assert.equal(z.code, 3, z.stderr);
      assert.match(z.stderr, /truncated/);
    });

    it('a gzip of something that is not a snapshot', async () => {
      writeFileSync(at('Full-00000000-00000001-1700000600.gz'), gzipSync(Buffer.from('I0101 00:00:00.000 etcd log line, not a snapshot\n'.repeat(500))));
      const r = await cli('backup', 'import', at('Full-00000000-00000001-1700000600.gz'));
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /gzip-compressed, but what it holds is not an etcd snapshot/);
    });

    it('a CSM tarball whose inner file is missing', async () => {
      mkdirSync(at('nocsm', 'etcd-backup-2022-02-02-00-00-00'), { recursive: true });
      writeFileSync(at('nocsm', 'etcd-backup-2022-02-02-00-00-00', 'backup.log'), 'etcdctl snapshot save failed\n');
      tarFiles(at('etcd-backup-2022-02-02-00-00-00.tar.gz'), at('nocsm'), ['etcd-backup-2022-02-02-00-00-00']);
      const r = await cli('backup', 'import', at('etcd-backup-2022-02-02-00-00-00.tar.gz'));
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /CSM tarball .* has no etcd-backup-2022-02-02-00-00-00\/etcd-dump\.bin .*backup\.log/);
    });

    it('an OKD folder without its snapshot', async () => {
      mkdirSync(at('okd-broken'));
      copyFileSync(at('backup', 'static_kuberesources_2021-04-14_123040.tar.gz'), at('okd-broken', 'static_kuberesources_2021-04-14_123040.tar.gz'));
      const r = await cli('backup', 'import', at('okd-broken'));
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /OKD backup folder .* has static_kuberesources_2021-04-14_123040\.tar\.gz but no snapshot_<timestamp>\.db/);
    });

    it('a snapshot of another etcd cluster (refused unless --force-foreign)', async () => {
      const etcd = await startEtcd();
      try {
        await writeKeys([etcd.endpoint], 10, 'foreign/');
        await saveSnapshot(etcd.endpoint, at('foreign.db'));
      } finally {
        await etcd.stop();
      }
      const r = await cli('backup', 'import', at('foreign.db'));
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /belongs to another cluster: its etcd cluster ID [0-9a-f]+ is none this cluster had/);
      assert.match(r.stderr, /--force-foreign/);
      const forced = await cli('backup', 'import', at('foreign.db'), '--force-foreign', '-o', 'json');
      assert.equal(forced.code, 0, forced.stderr);
      const rec = json<ImportResult>(forced).record!;
      assert.ok(!(await list()).snapshots.some((b) => b.name !== rec.name && b.clusterId === rec.clusterId));
      count++; // the forced import is the one backup this test adds
    });
  });
});
