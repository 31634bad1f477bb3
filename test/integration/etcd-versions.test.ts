import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ETCD_METRICS, layout, parseEtcdMetrics, Sandbox as SandboxClass, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { ETCD_MATRIX, etcdBinaries } from '../support/binaries.js';
import { json, runCli } from '../support/cli.js';
import { corruptMember, destroyMembers, readMember, sandboxClient, settled, startSandbox, stopSandbox, storeFor, tempDir, writeKeys } from '../support/sandbox.js';

/**
 * The etcd version matrix: the same focused checks on the newest patch of etcd 3.5, 3.6 and 3.7 (the
 * rest of the suite runs 3.6 only) — native verification against that release's own `etcdutl snapshot
 * status`, backup into MinIO, member replace, quorum-loss restore, and restores across minors: a
 * backup restores into the next minor, and is refused (exit 14) by the previous one before anything
 * is touched. A few hundred keys each, to keep every version's run short.
 */

const PUT = 300;
const OVERWRITTEN = 50;
const DELETED = 20;
const LIVE = PUT - DELETED;

type Bins = ReturnType<typeof etcdBinaries> & { version: string };
interface EtcdutlStatus {
  hash: number;
  revision: number;
  totalKey: number;
  totalSize: number;
  version?: string;
}

const reload = (sb: Sandbox) => SandboxClass.load(sb.dir)!;
const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function recoveryObjects(sb: Sandbox, cluster: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of storeFor(sb).list(layout.recoveriesPrefix(cluster))) keys.push(o.key);
  return keys.sort();
}
const etcdutlStatus = (etcdutl: string, file: string) => JSON.parse(execFileSync(etcdutl, ['snapshot', 'status', file, '-w', 'json']).toString()) as EtcdutlStatus;

/** The etcd every member reports running (the member-local status). */
async function memberVersions(sb: Sandbox): Promise<string[]> {
  return Promise.all(
    sb.state.members.map(async (m) => {
      const c = sandboxClient(sb, [m.clientURL]);
      try {
        return (await c.maintenance.status()).version;
      } finally {
        c.close();
      }
    }),
  );
}

/**
 * Until every member's storage version (etcd 3.6+: `meta/storageVersion`, what snapshots carry) is set:
 * etcd writes it only once the leader has decided the cluster version, polled every 4 s, so a
 * snapshot of a cluster seconds old has none yet, whatever its minor.
 */
async function storageVersionSet(sb: Sandbox, etcdctl: string, want: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const st = JSON.parse(execFileSync(etcdctl, ['--endpoints', sb.endpoints().join(','), 'endpoint', 'status', '-w', 'json']).toString()) as { Status: { storageVersion?: string } }[];
    const seen = st.map((x) => x.Status.storageVersion ?? '');
    if (seen.every((x) => x === want)) return;
    if (Date.now() > deadline) throw new Error(`storage version still ${JSON.stringify(seen)}, not ${want}, after 30 s`);
    await sleep(500);
  }
}

/** What follows the loss of every member's disk: the control plane comes back on `bins`' etcd. */
async function loseAllAndRunOn(sb: Sandbox, bins: Bins): Promise<Sandbox> {
  await destroyMembers(sb, sb.state.members.map((m) => m.name));
  const now = reload(sb);
  now.state.binaries = { etcd: bins.etcd, etcdctl: bins.etcdctl, etcdutl: bins.etcdutl };
  now.save();
  return now;
}

describe(`etcd version matrix: ${ETCD_MATRIX.map((m) => m.minor).join(', ')} (newest patches), real 3-member clusters and MinIO`, function () {
  this.timeout(600_000);
  const bins = new Map<string, Bins>();

  before(function () {
    // Builds what the cache lacks (3.5 and 3.7 are not built by setup): the first run takes minutes.
    this.timeout(3_600_000);
    for (const m of ETCD_MATRIX) {
      const b = etcdBinaries(m.minor);
      const version = /etcd Version:\s*(\S+)/.exec(execFileSync(b.etcd, ['--version']).toString())![1]!;
      assert.ok(version.startsWith(`${m.minor}.`), `${b.etcd} is etcd ${version}, not ${m.minor}`);
      bins.set(m.minor, { ...b, version });
    }
  });

  for (const [i, v] of ETCD_MATRIX.entries()) {
    const prev = ETCD_MATRIX[i - 1];
    const next = ETCD_MATRIX[i + 1];

    describe(`etcd ${v.minor}`, function () {
      let sb: Sandbox;
      let b: Bins;
      let created: SnapshotRecord;
      const cluster = `etcd-${v.minor.replace('.', '-')}-it`;
      const tmp = tempDir();
      const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);

      before(async () => {
        b = bins.get(v.minor)!;
        sb = await startSandbox({ members: 3, cluster, etcdBinDir: b.etcdBinDir });
        // History as well as live keys: puts, overwrites and deletes, so that the live-key count
        // (etcdutl 3.6+) and the count of every entry (etcdutl 3.5) differ.
        await writeKeys(sb.endpoints(), PUT, 'k/');
        await writeKeys(sb.endpoints(), OVERWRITTEN, 'k/', 32);
        const c = sandboxClient(sb);
        try {
          for (let k = PUT - DELETED; k < PUT; k++) await c.delete().key(`k/${String(k).padStart(7, '0')}`);
        } finally {
          c.close();
        }
        if (v.minor !== '3.5') await storageVersionSet(sb, b.etcdctl, `${v.minor}.0`);
      });
      after(async () => {
        await stopSandbox(sb);
        tmp.remove();
      });

      it(`every member runs etcd ${v.minor}`, async () => {
        assert.deepEqual(await memberVersions(sb), [b.version, b.version, b.version]);
      });

      it(`the metrics member-init and status read are there under the same names on etcd ${v.minor}`, async () => {
        await settled(sb);
        const views = [];
        for (const m of sb.state.members) {
          const text = await (await fetch(`${m.clientURL}/metrics`)).text();
          for (const name of Object.values(ETCD_METRICS)) assert.match(text, new RegExp(`^${name}(\\{[^}]*\\})? `, 'm'), `${m.name} exports ${name}`);
          const view = parseEtcdMetrics(text);
          assert.equal(view.revision, (await readMember(m.clientURL, '\u0000')).revision, `${m.name}: the revision metric is the member's revision`);
          assert.ok(view.dbSize > 0 && view.raftIndex > 0, JSON.stringify(view));
          views.push(view);
        }
        assert.ok(views.every((x) => x.hasLeader && !x.isLearner), JSON.stringify(views));
        assert.equal(views.filter((x) => x.isLeader).length, 1, 'exactly one leader');
      });

      it('backup create streams a verified snapshot into MinIO; its record names the etcd and storage version', async () => {
        const r = await cli('backup', 'create', '-o', 'json');
        assert.equal(r.code, 0, r.stderr);
        created = json<SnapshotRecord>(r);
        assert.equal(created.cluster, cluster);
        assert.equal(created.verification?.ok, true);
        assert.equal(created.etcdVersion, b.version);
        // etcd 3.6 introduced the storage version in the bbolt meta bucket; 3.5 writes none.
        assert.equal(created.storageVersion, v.minor === '3.5' ? undefined : `${v.minor}.0`);
        assert.equal(created.userKeys, LIVE);
        assert.equal(created.totalKeys, LIVE);
        const store = storeFor(sb);
        assert.equal((await store.head(layout.snapshotObject(cluster, created.name)))!.size, created.objectSize);
        assert.ok(await store.head(layout.snapshotRecord(cluster, created.name)));
      });

      it(`the native verifier reports exactly what etcdutl ${v.minor} snapshot status does (and etcdutl 3.5's TotalKey as totalEntries)`, async () => {
        const file = join(tmp.path, 'etcdctl.db');
        execFileSync(b.etcdctl, ['--endpoints', sb.endpoints()[0]!, 'snapshot', 'save', file], { stdio: 'ignore' });
        const own = etcdutlStatus(b.etcdutl, file);
        const local = json(await cli('backup', 'verify', '--file', file, '-o', 'json')).results[0];
        assert.equal(local.ok, true);
        // etcdutl 3.5's TotalKey counts every entry of every bucket; 3.6 redefined it as the live keys.
        const keysAsEtcdutl = v.minor === '3.5' ? local.totalEntries : local.totalKeys;
        assert.deepEqual(
          { revision: local.revision, hash: local.hash, totalSize: local.totalSize, totalKey: keysAsEtcdutl, version: local.storageVersion },
          { revision: own.revision, hash: own.hash, totalSize: own.totalSize, totalKey: own.totalKey, version: own.version },
        );
        assert.equal(own.version, v.minor === '3.5' ? undefined : `${v.minor}.0`, 'the storage version etcdutl reads');
        assert.equal(local.totalKeys, LIVE);
        assert.ok(local.totalEntries > PUT + OVERWRITTEN + DELETED, `totalEntries ${local.totalEntries} counts history and the other buckets`);
        // Both definitions hold on every minor's snapshot: etcdutl 3.5 and 3.6 on this same file.
        assert.equal(etcdutlStatus(bins.get('3.5')!.etcdutl, file).totalKey, local.totalEntries);
        assert.equal(etcdutlStatus(bins.get('3.6')!.etcdutl, file).totalKey, local.totalKeys);
        // The backup in the bucket verifies natively too, at its own revision.
        const inBucket = await cli('backup', 'verify', created.name, '-o', 'json');
        assert.equal(inBucket.code, 0, inBucket.stderr);
        assert.equal(json(inBucket).results[0].revision, created.revision);
        assert.equal(json(inBucket).results[0].totalKeys, LIVE);
      });

      it('member replace brings back a member whose data is corrupt, losing nothing', async () => {
        await corruptMember(sb, 'etcd-2');
        const status = json(await cli('status', '-o', 'json'));
        assert.equal(status.quorum, true);
        assert.equal(status.healthy, 2);
        const r = await cli('member', 'replace', 'etcd-2', '--yes', '-o', 'json');
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /added etcd-2 as learner [0-9a-f]+/);
        assert.match(r.stderr, /promoted etcd-2 to voting member/);
        sb = reload(sb);
        for (const m of sb.state.members) {
          const deadline = Date.now() + 10_000;
          let n = 0;
          while (Date.now() < deadline && (n = Object.keys((await readMember(m.clientURL)).keys).length) !== LIVE) await sleep(100);
          assert.equal(n, LIVE, `${m.name} has every key`);
        }
        const after = json(await cli('status', '-o', 'json'));
        assert.equal(after.healthy, 3);
        assert.ok(after.members.every((m: { learner: boolean }) => !m.learner));
        assert.deepEqual(await memberVersions(sb), [b.version, b.version, b.version]);
      });

      it('quorum restores a cluster that lost two members from the survivor, every key at a higher revision', async () => {
        sb = reload(sb);
        await settled(sb);
        await destroyMembers(sb, ['etcd-0', 'etcd-1']);
        const floor = (await readMember(sb.member('etcd-2').clientURL)).revision;
        const r = await cli('quorum', '--yes', '-o', 'json');
        assert.equal(r.code, 0, r.stderr);
        const report = json(r);
        assert.equal(report.restorePoint.kind, 'live');
        assert.equal(report.versions.verdict, 'ok', report.versions.reason);
        sb = reload(sb);
        for (const m of sb.state.members) {
          const { keys, revision } = await readMember(m.clientURL);
          assert.equal(Object.keys(keys).length, LIVE, `${m.name} holds every key`);
          assert.ok(revision > floor, `${m.name} revision ${revision} > ${floor}`);
        }
        assert.deepEqual(await memberVersions(sb), [b.version, b.version, b.version]);
      });

      // The backup the cross-minor restores below start from, taken while the cluster runs this minor.
      let cross: SnapshotRecord | undefined;
      const crossBackup = async () => {
        if (!cross) {
          const r = await cli('backup', 'create', '-o', 'json', '-q');
          assert.equal(r.code, 0, r.stderr);
          cross = json<SnapshotRecord>(r);
          assert.equal(cross.etcdVersion, b.version);
        }
        return cross;
      };

      if (prev) {
        it(`a ${v.minor} backup is refused by etcd ${prev.minor} before anything is touched (exit 14)`, async () => {
          sb = reload(sb);
          const backup = await crossBackup();
          const older = bins.get(prev.minor)!;
          sb = await loseAllAndRunOn(sb, older);
          const journalsBefore = await recoveryObjects(sb, cluster);
          const dry = await cli('quorum', '--dry-run', '-o', 'json', '--snapshot', backup.name);
          assert.equal(dry.code, 0, dry.stderr);
          const plan = json(dry);
          assert.deepEqual([plan.versions.snapshot.version, plan.versions.target.version, plan.versions.verdict], [b.version, older.version, 'refuse']);
          const r = await cli('quorum', '--yes', '--snapshot', backup.name, '-o', 'json');
          assert.equal(r.code, 14, r.stderr);
          assert.equal(json(r).error.code, 'VERSION_MISMATCH');
          assert.match(json(r).error.message, new RegExp(`the snapshot is from etcd ${esc(b.version)}, newer than the target's etcd ${esc(older.version)}: etcd cannot downgrade a data dir`));
          // The drill runs the local etcd: refused by the older one the same way.
          const drill = await runCli(['backup', 'drill', backup.name, '--sandbox-dir', sb.dir], { env: { ETCD_BIN_DIR: older.etcdBinDir } });
          assert.equal(drill.code, 14, drill.stderr);
          assert.match(drill.stderr, new RegExp(`newer than the target's etcd ${esc(older.version)}`));
          // Nothing began: no member data, no new journal, no lock.
          for (const m of reload(sb).state.members) assert.equal(existsSync(m.dataDir), false, `${m.name} has no data dir`);
          assert.deepEqual(await recoveryObjects(sb, cluster), journalsBefore, 'the refusals wrote no journal');
          assert.equal(await storeFor(sb).read(layout.lock(cluster)), undefined, 'no recovery lock was taken');
        });
      }

      if (next) {
        it(`a ${v.minor} backup restores into etcd ${next.minor}: every key, and the cluster runs ${next.minor}`, async () => {
          sb = reload(sb);
          const backup = await crossBackup();
          const newer = bins.get(next.minor)!;
          sb = await loseAllAndRunOn(sb, newer);
          const r = await cli('quorum', '--yes', '--snapshot', backup.name, '-o', 'json');
          assert.equal(r.code, 0, r.stderr);
          const report = json(r);
          assert.deepEqual([report.versions.snapshot.version, report.versions.target.version, report.versions.verdict], [b.version, newer.version, 'warn']);
          assert.match(report.versions.reason, /older than the target's etcd .*: the restored data is upgraded as etcd upgrades a member/);
          sb = reload(sb);
          for (const m of sb.state.members) assert.equal(Object.keys((await readMember(m.clientURL)).keys).length, LIVE, `${m.name} holds every key`);
          assert.deepEqual(await memberVersions(sb), [newer.version, newer.version, newer.version]);
          // The restored cluster backs up as the newer minor.
          const again = await cli('backup', 'create', '-o', 'json', '-q');
          assert.equal(again.code, 0, again.stderr);
          assert.equal(json<SnapshotRecord>(again).etcdVersion, newer.version);
          assert.equal(json<SnapshotRecord>(again).userKeys, LIVE);
        });
      }
    });
  }
});
