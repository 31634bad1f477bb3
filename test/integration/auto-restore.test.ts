import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Etcd3 } from 'etcd3';
import { Catalog, Journal, RecoveryLock, RESTORED_MARKER, layout, listAll, readJson, type Sandbox as SandboxT } from '@etcd-recover/core';
import { binaries } from '../support/binaries.js';
import { freePort } from '../support/ports.js';
import { json, runCli, type CliResult } from '../support/cli.js';
import { countOnMember, startSandbox, stopSandbox, storeFor, tempDir, writeKeys } from '../support/sandbox.js';

const KEYS = 300;

/**
 * Automatic restore (member-init --auto-restore, autoRestore on the component) on real etcd and
 * MinIO: three member-inits run as plugin processes, concurrently, for three empty data dirs beside
 * a bucket holding a trusted backup; then real etcd processes start from the configs they wrote.
 */
describe('automatic restore: every member empty → the members restore themselves from the newest trusted backup (real etcd + MinIO)', function () {
  this.timeout(600_000);
  let sb: SandboxT;
  let tmp: ReturnType<typeof tempDir>;
  let backup: { name: string; revision: number; createdAt: string; sha256: string };
  let catalog: Catalog;
  const etcds: ChildProcess[] = [];
  const metricsPorts: number[] = [];
  const dirs = (tag: string) => [0, 1, 2].map((i) => join(tmp.path, tag, `etcd-${i}`, 'data'));

  const memberInit = (i: number, dataDir: string, extra: string[] = [], env: Record<string, string> = {}): Promise<CliResult & { config?: Record<string, any> }> => {
    const m = sb.state.members;
    const cfg = join(dataDir, '..', `etcd.conf.yml`);
    try {
      rmSync(cfg, { force: true });
    } catch {
      /* its folder is not a folder (the failing member of the last test) */
    }
    const s3c = sb.s3Config();
    return runCli(
      [
        'agent', 'member-init',
        '--name', m[i]!.name,
        '--data-dir', dataDir,
        '--config-file', cfg,
        '--initial-cluster', m.map((x) => `${x.name}=${x.peerURL}`).join(','),
        '--client-urls', m.map((x) => `${x.name}=${x.clientURL}`).join(','),
        '--initial-cluster-token', sb.state.token,
        '--peer-url', m[i]!.peerURL,
        '--client-url', m[i]!.clientURL,
        '--metrics-port', String(metricsPorts[i]),
        '--peer-wait', '1',
        '--cluster', sb.state.cluster,
        '--bucket', s3c.bucket,
        '--s3-endpoint', s3c.endpoint!,
        ...extra,
      ],
      { env: { AWS_ACCESS_KEY_ID: s3c.credentials!.accessKeyId, AWS_SECRET_ACCESS_KEY: s3c.credentials!.secretAccessKey, ...env }, timeoutMs: 300_000 },
    ).then((r) => (existsSync(cfg) && !r.code ? { ...r, config: parse(readFileSync(cfg, 'utf8')) } : r));
  };
  const rounds = async () => (await listAll(catalog.store, layout.autoRestoreRoundsPrefix(sb.state.cluster))).map((o) => o.key);
  /**
   * Starts the three member-inits of a new disaster. A member whose last start (in the previous
   * test) voted "has-data" seconds ago starts first, and the others only once its new vote says
   * "empty": otherwise they may read its old, still fresh "has-data" vote and rightly refuse.
   */
  const initAll = async (d: string[], extra: string[]): Promise<Awaited<ReturnType<typeof memberInit>>[]> => {
    const voteOf = async (i: number) => (await readJson<any>(catalog.store, layout.autoRestoreVote(sb.state.cluster, sb.state.members[i]!.name)))?.value;
    const first: number[] = [];
    for (const i of [0, 1, 2]) if ((await voteOf(i))?.state === 'has-data') first.push(i);
    const started = new Map<number, ReturnType<typeof memberInit>>();
    for (const i of first) started.set(i, memberInit(i, d[i]!, extra));
    for (const i of first) {
      const deadline = Date.now() + 60_000;
      while ((await voteOf(i))?.state !== 'empty') {
        assert.ok(Date.now() < deadline, `etcd-${i} never voted "empty"`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    for (const i of [0, 1, 2]) if (!started.has(i)) started.set(i, memberInit(i, d[i]!, extra));
    return Promise.all([0, 1, 2].map((i) => started.get(i)!));
  };
  const startEtcd = (config: Record<string, any>, cfgFile: string): void => {
    const log = openSync(`${cfgFile}.log`, 'a');
    const p = spawn(binaries().etcd, ['--config-file', cfgFile], { stdio: ['ignore', log, log] });
    etcds.push(p);
    void config;
  };
  const stopEtcds = async () => {
    for (const p of etcds.splice(0)) {
      p.kill('SIGKILL');
      await new Promise((r) => (p.exitCode !== null ? r(undefined) : p.once('exit', r)));
    }
  };

  before(async () => {
    tmp = tempDir();
    for (let i = 0; i < 3; i++) metricsPorts.push(await freePort());
    sb = await startSandbox({ members: 3, cluster: 'ar' });
    await writeKeys(sb.endpoints(), KEYS, 'k/');
    const r = await runCli(['backup', 'create', '-o', 'json', '-q'], { env: { ETCD_RECOVER_SANDBOX: sb.dir } });
    assert.equal(r.code, 0, r.stderr);
    backup = json(r);
    // Every member is lost: nothing answers on the peers' URLs, which the member-inits below reuse.
    for (const m of sb.state.members) await sb.stopMember(m.name, { kill: true });
    catalog = new Catalog(storeFor(sb), sb.state.cluster);
  });
  after(async () => {
    await stopEtcds();
    await stopSandbox(sb);
    tmp?.remove();
  });

  it('three empty members at once → exactly one decision, all restore the same backup, real etcd starts with every key', async () => {
    const d = dirs('all-empty');
    // Something non-etcd in one data dir: set aside, never deleted.
    mkdirSync(d[0]!, { recursive: true });
    writeFileSync(join(d[0]!, 'stray.txt'), 'keep me');
    const results = await Promise.all(d.map((dir, i) => memberInit(i, dir, ['--auto-restore', '--vote-wait', '60'])));
    for (const r of results) assert.equal(r.code, 0, r.stderr);

    const keys = await rounds();
    assert.equal(keys.length, 1, `exactly one decision object: ${keys.join(', ')}`);
    const decision = (await readJson<any>(catalog.store, keys[0]!))!.value;
    assert.equal(decision.snapshot.name, backup.name);
    assert.equal(decision.snapshot.sha256, backup.sha256);
    assert.equal(decision.snapshot.revision, backup.revision);
    assert.ok(decision.bump >= 100_000);
    assert.deepEqual(decision.members, ['etcd-0', 'etcd-1', 'etcd-2']);
    assert.equal(results.filter((r) => /decided automatic-restore round/.test(r.stderr)).length, 1, 'one member decided, the others followed');

    for (const [i, r] of results.entries()) {
      assert.equal(r.config?.['initial-cluster-state'], 'new');
      assert.equal(r.config?.['initial-cluster-token'], decision.token, 'the decision\'s token, not the declared one');
      const marker = JSON.parse(readFileSync(join(d[i]!, RESTORED_MARKER), 'utf8'));
      assert.equal(marker.recoveryId, decision.recoveryId);
      assert.equal(marker.snapshot, backup.name);
      assert.match(r.stderr, /fetched .* and verified it natively: sha256 matches/);
    }
    assert.equal(readFileSync(join(`${d[0]!}.before-${decision.recoveryId}`, 'stray.txt'), 'utf8'), 'keep me', 'what was in the data dir is set aside');

    const journal = (await Journal.load(catalog.store, sb.state.cluster, decision.recoveryId))!;
    assert.equal(journal.doc.plan.kind, 'auto-restore');
    assert.equal(journal.doc.status, 'completed');
    assert.ok(journal.doc.steps.every((s) => s.state === 'done'));
    assert.equal(await new RecoveryLock(catalog.store, sb.state.cluster).read(), undefined, 'the lock is released');

    // The restored members start as real etcd processes from the configs member-init wrote.
    for (const [i, r] of results.entries()) startEtcd(r.config!, join(d[i]!, '..', 'etcd.conf.yml'));
    for (const m of sb.state.members) {
      assert.equal(await waitCount(m.clientURL, 'k/', KEYS), KEYS, `${m.name}: every key of the backup`);
      const c = new Etcd3({ hosts: [m.clientURL] });
      try {
        const s = await c.maintenance.status();
        assert.ok(Number(s.header.revision) >= backup.revision + decision.bump, 'revision bumped past the backup');
      } finally {
        c.close();
      }
    }
    await stopEtcds();
  });

  it('one member holds data → no automatic restore (it votes "has data"; the empty ones refuse)', async () => {
    const restored = dirs('all-empty');
    const d = dirs('one-has-data');
    // etcd-2 keeps its (restored) data; etcd-0 and etcd-1 lost theirs.
    mkdirSync(join(d[2]!, '..'), { recursive: true });
    renameSync(restored[2]!, d[2]!);
    const withData = await memberInit(2, d[2]!, ['--auto-restore']);
    assert.equal(withData.code, 0, withData.stderr);
    const before = await rounds();
    const [a, b] = await Promise.all([0, 1].map((i) => memberInit(i, d[i]!, ['--auto-restore', '--vote-wait', '4'])));
    for (const r of [a!, b!]) {
      assert.equal(r.code, 9, r.stderr);
      assert.equal(r.config, undefined);
      assert.match(r.stderr, /refusing to bootstrap an empty cluster.*\(automatic restore: not while etcd-2 holds data\)/);
    }
    assert.deepEqual(await rounds(), before, 'no new decision');
    assert.equal(existsSync(join(d[0]!, 'member')), false);
  });

  it('`quorum` holds the recovery lock → no automatic restore', async () => {
    const d = dirs('locked');
    const lock = new RecoveryLock(catalog.store, sb.state.cluster);
    await lock.acquire('rec-20261201T000000Z-0001', 'quorum', 'kubectl etcd-recover quorum --yes');
    try {
      const before = await rounds();
      const results = await Promise.all(d.map((dir, i) => memberInit(i, dir, ['--auto-restore', '--vote-wait', '20'])));
      for (const r of results) {
        assert.equal(r.code, 7, r.stderr);
        assert.match(r.stderr, /another recovery of this cluster is under way \(quorum rec-20261201T000000Z-0001/);
        assert.equal(r.config, undefined);
      }
      assert.deepEqual(await rounds(), before, 'no decision');
      for (const dir of d) assert.equal(existsSync(join(dir, 'member')), false, 'nothing restored');
    } finally {
      await lock.release();
    }
  });

  it('a member that fails mid-round: `status` shows the round, `quorum` refuses while it is unfinished, its next start resumes and completes it', async () => {
    const d = dirs('resume');
    // etcd-2's volume cannot hold the snapshot this time (its parent is a file): it fails before any destructive step.
    mkdirSync(join(d[2]!, '..', '..'), { recursive: true });
    writeFileSync(join(d[2]!, '..'), 'not a directory');
    const results = await initAll(d, ['--auto-restore', '--vote-wait', '60']);
    assert.equal(results[0]!.code, 0, results[0]!.stderr);
    assert.equal(results[1]!.code, 0, results[1]!.stderr);
    assert.notEqual(results[2]!.code, 0, results[2]!.stderr);
    const keys = await rounds();
    assert.equal(keys.length, 2, 'a new disaster: a new round under a new key');
    const decision = (await readJson<any>(catalog.store, keys[1]!))!.value;
    assert.notEqual(decision.recoveryId, (await readJson<any>(catalog.store, keys[0]!))!.value.recoveryId);

    const env = { env: { ETCD_RECOVER_SANDBOX: sb.dir } };
    const q = await runCli(['quorum', '--yes'], env);
    assert.equal(q.code, 9, q.stderr);
    assert.match(q.stderr, new RegExp(`unfinished auto-restore recovery ${decision.recoveryId}`));
    const st = await runCli(['status', '-o', 'json'], env);
    assert.equal(json(st).unfinished?.id, decision.recoveryId, st.stderr);

    rmSync(join(d[2]!, '..'));
    const again = await memberInit(2, d[2]!, ['--auto-restore', '--vote-wait', '60']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.config?.['initial-cluster-token'], decision.token);
    assert.equal(JSON.parse(readFileSync(join(d[2]!, RESTORED_MARKER), 'utf8')).recoveryId, decision.recoveryId, 'the same round, not a new one');
    assert.equal((await rounds()).length, 2);
    assert.equal((await Journal.load(catalog.store, sb.state.cluster, decision.recoveryId))!.doc.status, 'completed');
    for (const dir of d) startEtcd({}, join(dir, '..', 'etcd.conf.yml'));
    for (const m of sb.state.members) assert.equal(await waitCount(m.clientURL, 'k/', KEYS), KEYS, `${m.name}: every key of the backup`);
    await stopEtcds();
  });

  it('a member-init killed right after its restore (before the journal records it) resumes on its next start: the round completes, nothing restored twice', async () => {
    const d = dirs('crash');
    const before = (await rounds()).length;
    const crashed = memberInit(0, d[0]!, ['--auto-restore', '--vote-wait', '60'], { ETCD_RECOVER_FAULT_AFTER_STEP: 'restore:etcd-0' });
    const others = await Promise.all([1, 2].map((i) => memberInit(i, d[i]!, ['--auto-restore', '--vote-wait', '60'])));
    const killed = await crashed;
    assert.notEqual(killed.code, 0, 'etcd-0 was killed after its restore');
    for (const r of others) assert.equal(r.code, 0, r.stderr);
    const keys = await rounds();
    assert.equal(keys.length, before + 1, 'one new round');
    const decision = (await readJson<any>(catalog.store, keys[keys.length - 1]!))!.value;
    const marker = JSON.parse(readFileSync(join(d[0]!, RESTORED_MARKER), 'utf8'));
    assert.equal(marker.recoveryId, decision.recoveryId, 'the effect was in place when it died');
    let journal = (await Journal.load(catalog.store, sb.state.cluster, decision.recoveryId))!;
    assert.notEqual(journal.doc.status, 'completed', 'etcd-0 never reported');

    const again = await memberInit(0, d[0]!, ['--auto-restore', '--vote-wait', '60']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /recording it in its journal/);
    assert.equal(again.config?.['initial-cluster-token'], decision.token);
    journal = (await Journal.load(catalog.store, sb.state.cluster, decision.recoveryId))!;
    assert.equal(journal.doc.status, 'completed');
    assert.equal(journal.step('restore:etcd-0').note, 'already held');
    assert.equal((await rounds()).length, before + 1, 'no further round');
    for (const dir of d) startEtcd({}, join(dir, '..', 'etcd.conf.yml'));
    for (const m of sb.state.members) assert.equal(await waitCount(m.clientURL, 'k/', KEYS), KEYS, `${m.name}: every key of the backup`);
    await stopEtcds();
  });

  it('a round left open is never followed for a new disaster once a newer trusted backup exists: a new round restores the newest', async () => {
    const d = dirs('stale');
    mkdirSync(join(d[2]!, '..', '..'), { recursive: true });
    writeFileSync(join(d[2]!, '..'), 'not a directory'); // etcd-2 cannot finish: the round stays open
    const results = await initAll(d, ['--auto-restore', '--vote-wait', '60']);
    assert.equal(results[0]!.code, 0, results[0]!.stderr);
    assert.equal(results[1]!.code, 0, results[1]!.stderr);
    const keys = await rounds();
    const old = (await readJson<any>(catalog.store, keys[keys.length - 1]!))!.value;
    // etcd-0 and etcd-1 run (a quorum of 3), take writes and a newer backup.
    for (const dir of d.slice(0, 2)) startEtcd({}, join(dir, '..', 'etcd.conf.yml'));
    const m = sb.state.members;
    assert.equal(await waitCount(m[0]!.clientURL, 'k/', KEYS), KEYS);
    await writeKeys([m[0]!.clientURL, m[1]!.clientURL], 50, 'new/');
    const s3c = sb.s3Config();
    const b = await runCli(['backup', 'create', '-o', 'json', '-q', '--endpoints', `${m[0]!.clientURL},${m[1]!.clientURL}`, '--cluster', sb.state.cluster, '--bucket', s3c.bucket, '--s3-endpoint', s3c.endpoint!], {
      env: { AWS_ACCESS_KEY_ID: s3c.credentials!.accessKeyId, AWS_SECRET_ACCESS_KEY: s3c.credentials!.secretAccessKey },
    });
    assert.equal(b.code, 0, b.stderr);
    const newer = json(b);
    await stopEtcds();
    rmSync(join(d[2]!, '..'));

    // Every member lost again: the open round is superseded, a new one restores the newer backup.
    const d2 = dirs('stale-2');
    const again = await Promise.all(d2.map((dir, i) => memberInit(i, dir, ['--auto-restore', '--vote-wait', '60'])));
    for (const r of again) assert.equal(r.code, 0, r.stderr);
    const after = await rounds();
    assert.equal(after.length, keys.length + 1, 'a new round under a new key');
    const fresh = (await readJson<any>(catalog.store, after[after.length - 1]!))!.value;
    assert.equal(fresh.snapshot.name, newer.name);
    const oldJournal = (await Journal.load(catalog.store, sb.state.cluster, old.recoveryId))!;
    assert.equal(oldJournal.doc.status, 'abandoned');
    assert.match(oldJournal.doc.abandoned!.reason, /superseded: a newer trusted backup exists/);
    for (const [i, r] of again.entries()) {
      assert.equal(r.config?.['initial-cluster-token'], fresh.token);
      assert.equal(JSON.parse(readFileSync(join(d2[i]!, RESTORED_MARKER), 'utf8')).snapshot, newer.name);
    }
    for (const dir of d2) startEtcd({}, join(dir, '..', 'etcd.conf.yml'));
    for (const x of m) {
      assert.equal(await waitCount(x.clientURL, 'new/', 50), 50, `${x.name}: the newer backup's keys`);
      assert.equal(await waitCount(x.clientURL, 'k/', KEYS), KEYS);
    }
    await stopEtcds();
  });
});

async function waitCount(endpoint: string, prefix: string, want: number): Promise<number> {
  const until = Date.now() + 60_000;
  let last = -1;
  for (;;) {
    try {
      last = await countOnMember(endpoint, prefix);
      if (last === want) return last;
    } catch {
      /* not up yet */
    }
    if (Date.now() > until) return last;
    await new Promise((r) => setTimeout(r, 500));
  }
}
