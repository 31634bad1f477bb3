import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { Catalog, listChains, readSegment, type Sandbox } from '@etcd-recover/core';
import { binaries } from '../support/binaries.js';
import { json, runCli } from '../support/cli.js';
import { destroyMembers, startSandbox, stopSandbox, storeFor } from '../support/sandbox.js';
import { archivedTo, startArchiver, switchableProxy } from '../support/archiver.js';

/** One key as `etcdctl get -w json` shows it (key and value decoded; the lease ID as a string: it is an int64). */
interface Kv {
  key: string;
  value: string;
  create_revision: number;
  mod_revision: number;
  version: number;
  lease?: string;
}

const etcdctl = (sb: Sandbox, args: string[]) => execFileSync(join(binaries().etcdBinDir, 'etcdctl'), ['--endpoints', sb.endpoints().join(','), ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });

/** The whole keyspace (at a revision, or now), every field a restore must give back. */
function keyspace(sb: Sandbox, rev?: number): Kv[] {
  const out = etcdctl(sb, ['get', '', '--from-key', '-w', 'json', ...(rev ? [`--rev=${rev}`] : [])]).replace(/"lease":(\d+)/g, '"lease":"$1"');
  const kvs = (JSON.parse(out).kvs ?? []) as (Omit<Kv, 'key' | 'value'> & { key: string; value?: string })[];
  return kvs.map((k) => ({
    key: Buffer.from(k.key, 'base64').toString('latin1'),
    value: Buffer.from(k.value ?? '', 'base64').toString('latin1'),
    create_revision: k.create_revision,
    mod_revision: k.mod_revision,
    version: k.version,
    ...(k.lease && k.lease !== '0' ? { lease: k.lease } : {}),
  }));
}

const revisionOf = (sb: Sandbox) => Number(JSON.parse(etcdctl(sb, ['endpoint', 'status', '-w', 'json', '--endpoints', sb.endpoints()[0]!]))[0].Status.header.revision);

/**
 * The revision once the cluster stopped moving by itself: the workload's short leases expire a few
 * seconds after its last write and each expiry is a revision. A point taken before they expire is not
 * the archive's newest, and the plan rightly counts the expiries after it as lost.
 */
async function quietRevision(sb: Sandbox, quietMs = 5_000, maxMs = 60_000): Promise<number> {
  const end = Date.now() + maxMs;
  let rev = revisionOf(sb);
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > end) throw new Error(`the revision still moves after ${maxMs} ms (now ${rev})`);
    await sleep(500);
    const now = revisionOf(sb);
    if (now !== rev) [rev, since] = [now, Date.now()];
  }
  return rev;
}

/**
 * Writes for `ms`: new keys and overwrites, single deletes and range deletes, multi-key transactions,
 * keys on leases (long ones that outlive the test, short ones that expire and take their keys with
 * them, some revoked). Returns how many operations it made.
 */
async function workload(sb: Sandbox, ms: number): Promise<number> {
  const c = new Etcd3({ hosts: sb.endpoints() });
  const leases: { id: string; grant: ReturnType<Etcd3['lease']> }[] = [];
  let ops = 0;
  let n = 0;
  const end = Date.now() + ms;
  try {
    while (Date.now() < end) {
      const r = n++ % 20;
      const k = `w/${String((n * 7919) % 400).padStart(3, '0')}`;
      if (r < 9) await c.put(k).value(`v${n}-${'x'.repeat(n % 50)}`);
      else if (r < 12) await c.delete().key(k);
      else if (r === 12) await c.delete().prefix(`w/1${n % 10}`);
      else if (r < 16) {
        await c.if('w/none', 'Version', '==', 0).then(c.put(`t/${n % 50}/a`).value(`${n}`), c.put(`t/${n % 50}/b`).value(`${n}`), c.delete().key(`t/${(n + 1) % 50}/a`)).commit();
      } else if (r < 18) {
        const ttl = n % 3 === 0 ? 3 : 600;
        const grant = c.lease(ttl, { autoKeepAlive: ttl > 10 });
        const id = await grant.grant();
        leases.push({ id, grant });
        await grant.put(`l/${n}`).value(`leased ${ttl}s`);
      } else if (r === 18 && leases.length > 4) {
        await leases.splice(1, 1)[0]!.grant.revoke();
      } else await c.put(`big/${n % 5}`).value('b'.repeat(2000 + (n % 3000)));
      ops++;
      await sleep(2);
    }
  } finally {
    for (const l of leases) l.grant.release();
    c.close();
  }
  return ops;
}

describe('continuous archiving and point-in-time restore (real etcd, real MinIO)', function () {
  this.timeout(900_000);
  let sb: Sandbox;
  afterEach(async () => {
    await stopSandbox(sb);
  });

  it('a minute of puts, deletes, transactions and leases; every member lost; each recorded revision restores exactly (values, create/mod revisions, versions, leases)', async () => {
    sb = await startSandbox();
    const archiver = startArchiver(sb);
    let recorded: Map<number, Kv[]>;
    try {
      await archivedTo(sb, 1, 60_000);
      const first = revisionOf(sb);
      const ops = await workload(sb, 60_000);
      const last = await quietRevision(sb);
      assert.ok(last - first > 2_000, `${last - first} revisions written (${ops} operations)`);
      const points = [first + Math.floor((last - first) * 0.3), first + Math.floor((last - first) * 0.7), last];
      recorded = new Map(points.map((r) => [r, keyspace(sb, r)]));
      for (const r of points) assert.ok(recorded.get(r)!.length > 50, `keys at ${r}`);
      assert.ok(recorded.get(last)!.some((k) => k.lease), 'leased keys at the last point');
      // History before `last` is compacted away: from now on only the archive has these points.
      etcdctl(sb, ['compact', String(last)]);
      const status = await archivedTo(sb, last);
      assert.equal(status.alarm, undefined);
      assert.equal(await archiver.stop(), 0, archiver.log());
    } finally {
      await archiver.stop('SIGKILL');
    }
    await destroyMembers(sb, sb.state.members.map((m) => m.name));

    const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir], { timeoutMs: 600_000 });
    const list = await cli('backup', 'list', '-o', 'json');
    assert.equal(list.code, 0, list.stderr);
    const chains = json(list).archive;
    assert.equal(chains.length, 1, JSON.stringify(chains));
    const [R1, R2, R3] = [...recorded.keys()];
    const dry = await cli('quorum', '--to-revision', String(R3), '--dry-run', '-o', 'json');
    assert.equal(dry.code, 0, dry.stderr);
    const plan = json(dry);
    assert.equal(plan.restorePoint.kind, 'point-in-time');
    assert.equal(plan.restorePoint.pointInTime.chain, chains[0].chain);
    assert.ok(plan.restorePoint.pointInTime.segments > 10, 'a second of writes per segment');
    assert.equal(plan.steps[0].id, 'build-point-in-time');
    assert.equal(plan.loss.revisions, 0, plan.loss.note);

    let restoredOnce = false;
    for (const R of [R3, R1, R2]) {
      // Both replays give the same keyspace: the file replay (etcd-recover-replay, the default) and,
      // for R1, the one through a temporary etcd's API.
      const api = R === R1;
      const run = await runCli(['quorum', '--to-revision', String(R), '--yes', '-o', 'json', ...(restoredOnce ? ['--force'] : []), '--sandbox-dir', sb.dir], { timeoutMs: 600_000, ...(api ? { env: { ETCD_RECOVER_REPLAY: 'api' } } : {}) });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, /replayed \d+ revisions/);
      if (api) assert.doesNotMatch(run.stderr, /applied \d+ revisions to the base's data file/);
      else assert.match(run.stderr, /applied \d+ revisions to the base's data file/);
      const got = keyspace(sb);
      const want = recorded.get(R)!;
      assert.equal(got.length, want.length, `keys at revision ${R}`);
      assert.deepEqual(got, want, `the keyspace restored to revision ${R} is the recorded one`);
      restoredOnce = true;
    }
    // Leases: the restored keys keep their lease; the lease keeps its granted TTL and counts down afresh.
    const leased = recorded.get(R2)!.find((k) => k.lease && k.value === 'leased 600s')!;
    const ttl = JSON.parse(etcdctl(sb, ['lease', 'timetolive', BigInt(leased.lease!).toString(16), '-w', 'json']).replace(/"id":(\d+)/, '"id":"$1"'));
    assert.equal(ttl['granted-ttl'], 600);
    assert.ok(ttl.ttl > 500, `remaining ${ttl.ttl}`);
    // The point-in-time builds are backups restored by name only: none became "the latest".
    const after = json(await cli('backup', 'list', '-o', 'json')).snapshots;
    const pit = after.filter((s: { labels?: Record<string, string> }) => s.labels?.['reason'] === 'point-in-time');
    assert.equal(pit.length, 3);
    assert.ok(pit.every((s: { trusted: boolean }) => !s.trusted));
  });

  it('`backup history` finds when a key was created, changed and deleted; a drill to the revision before the deletion has it back', async () => {
    sb = await startSandbox();
    const archiver = startArchiver(sb);
    const c = new Etcd3({ hosts: sb.endpoints() });
    try {
      await archivedTo(sb, 1, 60_000);
      await c.put('cfg/app').value('one');
      await c.put('other').value('x');
      await c.put('cfg/app').value('two-two');
      await c.put('cfg/db').value('d');
      await c.delete().key('cfg/app');
      await c.put('later').value('y');
      await archivedTo(sb, revisionOf(sb));
    } finally {
      c.close();
      await archiver.stop();
    }
    const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir], { timeoutMs: 600_000 });
    const h = await cli('backup', 'history', 'cfg/app', '-o', 'json');
    assert.equal(h.code, 0, h.stderr);
    const rows = json(h);
    assert.deepEqual(rows.map((r: { change: string; size: number }) => [r.change, r.size]), [['created', 3], ['changed', 7], ['deleted', 0]]);
    const del = rows[2].revision;
    const human = await cli('backup', 'history', 'cfg/', '--key-prefix');
    assert.match(human.stdout, /cfg\/db/);
    assert.match(human.stdout, new RegExp(`quorum --to-revision ${del - 1} --dry-run`));
    const drill = await cli('backup', 'drill', '--to-revision', String(del - 1), '-o', 'json');
    assert.equal(drill.code, 0, drill.stderr);
    const d = json(drill);
    assert.equal(d.pointInTime.revision, del - 1);
    assert.equal(d.keys, 3, 'cfg/app, other, cfg/db');
    const byTime = await cli('backup', 'drill', '--to-time', rows[1].at, '-o', 'json');
    assert.equal(byTime.code, 0, byTime.stderr);
    assert.ok(json(byTime).pointInTime.revision >= rows[1].revision && json(byTime).pointInTime.revision < del, JSON.stringify(json(byTime).pointInTime));
  });

  it('a corrupt segment and a missing one: a point before them restores; one past them refuses naming the range', async () => {
    sb = await startSandbox({ members: 1 });
    const archiver = startArchiver(sb);
    try {
      await archivedTo(sb, 1, 60_000);
      const c = new Etcd3({ hosts: sb.endpoints() });
      for (let i = 0; i < 12; i++) {
        for (let j = 0; j < 20; j++) await c.put(`k/${i}/${j}`).value('v');
        await sleep(300);
      }
      c.close();
      await archivedTo(sb, revisionOf(sb));
    } finally {
      await archiver.stop();
    }
    const store = storeFor(sb);
    const segs = (await listChains(store, sb.state.cluster))[0]!.segments;
    assert.ok(segs.length >= 6, `${segs.length} segments`);
    const [bad, gone] = [segs[2]!, segs[4]!];
    await store.put(bad.key, Buffer.from('not a segment'));
    await store.delete(gone.key);
    const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir], { timeoutMs: 600_000 });
    const ok = await cli('backup', 'drill', '--to-revision', String(bad.first - 1), '--members', '1', '-o', 'json');
    assert.equal(ok.code, 0, ok.stderr);
    const corrupt = await cli('backup', 'drill', '--to-revision', String(bad.last), '--members', '1');
    assert.equal(corrupt.code, 3, corrupt.stderr);
    assert.match(corrupt.stderr, new RegExp(`archive segment .*revisions ${bad.first}-${bad.last}\\) cannot be decompressed`));
    const missing = await cli('quorum', '--to-revision', String(gone.last), '--dry-run');
    assert.equal(missing.code, 4, missing.stderr);
    assert.match(missing.stderr, new RegExp(`missing revisions ${gone.first}-${gone.last}`));
    const outside = await cli('quorum', '--to-revision', '999999', '--dry-run');
    assert.equal(outside.code, 4);
    assert.match(outside.stderr, /revision 999999 is in no archive chain; restorable ranges: chain \S+: revisions 1-/);
  });

  it('killed at random moments while writes run: no partial segment is ever listed, and every restart resumes the same chain without a hole', async () => {
    sb = await startSandbox({ members: 1 });
    const c = new Etcd3({ hosts: sb.endpoints() });
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) await c.put(`k/${i % 300}`).value('v'.repeat(i % 500));
    })();
    try {
      for (let round = 0; round < 4; round++) {
        const a = startArchiver(sb, ['--interval', '50']);
        await archivedTo(sb, revisionOf(sb) - 1, 60_000).catch((e: Error) => {
          throw new Error(`${e.message}\n${a.log()}`);
        });
        await sleep(300 + Math.floor(Math.random() * 700));
        await a.stop('SIGKILL');
      }
      const a = startArchiver(sb);
      writing = false;
      await writer;
      await archivedTo(sb, revisionOf(sb));
      await a.stop();
      assert.match(a.log(), /took the fence over from an archiver that is gone/);
      assert.match(a.log(), /resuming chain \S+ from revision \d+/);
    } finally {
      writing = false;
      await writer.catch(() => undefined);
      c.close();
    }
    const catalog = new Catalog(storeFor(sb), sb.state.cluster);
    const chains = await listChains(catalog.store, sb.state.cluster);
    assert.equal(chains.length, 1, 'one chain: every restart resumed it');
    assert.equal(chains[0]!.hole, undefined);
    assert.equal(chains[0]!.to, revisionOf(sb));
    for (const s of chains[0]!.segments) assert.equal((await readSegment(catalog, s)).batches.length, s.last - s.first + 1);
  });

  it('rebases: a new chain from a fresh base every few seconds meets the old one exactly, and a point on either side of a handover restores', async () => {
    sb = await startSandbox({ members: 1 });
    const a = startArchiver(sb, ['--rebase-every', '2']);
    const c = new Etcd3({ hosts: sb.endpoints() });
    try {
      await archivedTo(sb, 1, 60_000);
      const end = Date.now() + 7_000;
      await Promise.all(
        Array.from({ length: 4 }, async (_, w) => {
          for (let i = 0; Date.now() < end; i++) await c.put(`k/${w}/${i % 100}`).value(`v${i}`);
        }),
      );
      await archivedTo(sb, revisionOf(sb));
    } finally {
      c.close();
      await a.stop();
    }
    const chains = await listChains(storeFor(sb), sb.state.cluster);
    assert.ok(chains.length >= 3, `${chains.length} chains`);
    for (let i = 1; i < chains.length; i++) {
      assert.equal(chains[i]!.record.reason, 'rebased');
      // The old chain reaches the new base (or past it, when it took revisions while the base was taken).
      assert.ok(chains[i - 1]!.to >= chains[i]!.record.base.revision, `chain ${i - 1} reaches where chain ${i} begins`);
    }
    for (const ch of chains) {
      assert.equal(ch.hole, undefined, `chain ${ch.record.chain} has no hole`);
      assert.equal(ch.stranded, 0);
      if (ch.segments.length) assert.equal(ch.segments[0]!.first, ch.record.base.revision + 1, 'each chain goes on right after its base');
    }
    assert.equal(chains[chains.length - 1]!.to, revisionOf(sb));
    const list = await runCli(['backup', 'list', '--sandbox-dir', sb.dir]);
    assert.doesNotMatch(list.stdout, /gap before chain/);
    const at = chains[1]!.record.base.revision;
    for (const R of [at - 1, at + 1]) {
      const d = await runCli(['backup', 'drill', '--to-revision', String(R), '--members', '1', '-o', 'json', '--sandbox-dir', sb.dir], { timeoutMs: 600_000 });
      assert.equal(d.code, 0, d.stderr);
      assert.equal(json(d).pointInTime.revision, R);
    }
  });

  it('two archivers: the second waits on the fence and takes over the same chain when the first dies', async () => {
    sb = await startSandbox({ members: 1 });
    const one = startArchiver(sb);
    await archivedTo(sb, 1, 60_000);
    const two = startArchiver(sb);
    const c = new Etcd3({ hosts: sb.endpoints() });
    try {
      for (let i = 0; i < 50; i++) await c.put(`a/${i}`).value('1');
      await archivedTo(sb, revisionOf(sb));
      await sleep(1_000);
      assert.match(two.log(), /another archiver holds the fence/);
      await one.stop('SIGKILL');
      for (let i = 0; i < 50; i++) await c.put(`b/${i}`).value('2');
      await archivedTo(sb, revisionOf(sb), 60_000);
    } finally {
      c.close();
      await one.stop('SIGKILL');
      await two.stop();
    }
    const chains = await listChains(storeFor(sb), sb.state.cluster);
    assert.equal(chains.length, 1);
    assert.equal(chains[0]!.hole, undefined);
    assert.equal(chains[0]!.to, revisionOf(sb));
  });

  it('an S3 outage: shorter than the compaction window, it catches up without a gap; longer (the buffer full, etcd compacted meanwhile), a new chain records the gap; points in the gap or past every chain are refused', async () => {
    sb = await startSandbox({ members: 1 });
    const proxy = await switchableProxy(sb.s3Config().endpoint!);
    const a = startArchiver(sb, ['--s3-endpoint', proxy.url, '--max-buffer-mib', '1']);
    const c = new Etcd3({ hosts: sb.endpoints() });
    try {
      await archivedTo(sb, 1, 60_000);
      for (let i = 0; i < 20; i++) await c.put(`k/${i}`).value('v');
      await archivedTo(sb, revisionOf(sb));
      proxy.down();
      for (let i = 0; i < 100; i++) await c.put(`short/${i}`).value('v');
      await sleep(3_000);
      proxy.up();
      await archivedTo(sb, revisionOf(sb), 60_000);
      assert.match(a.log(), /cannot write archive segments/);
      assert.match(a.log(), /catches up/);
      let chains = await listChains(storeFor(sb), sb.state.cluster);
      assert.equal(chains.length, 1, 'no gap after a short outage');
      const beforeLong = chains[0]!.to;

      proxy.down();
      for (let i = 0; i < 300; i++) await c.put(`long/${i}`).value('x'.repeat(8_000));
      await sleep(2_000);
      assert.match(a.log(), /stopped reading etcd/);
      etcdctl(sb, ['compact', String(revisionOf(sb))]);
      proxy.up();
      await waitForChains(sb, 2);
      await archivedTo(sb, revisionOf(sb), 60_000);
      chains = await listChains(storeFor(sb), sb.state.cluster);
      assert.equal(chains[1]!.record.reason, 'compacted');
      assert.ok(chains[1]!.record.previous!.last >= beforeLong);
      assert.match(a.log(), /starting a new chain/);
    } finally {
      c.close();
      await a.stop();
      await proxy.close();
    }
    const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir], { timeoutMs: 600_000 });
    const chains = await listChains(storeFor(sb), sb.state.cluster);
    const list = await cli('backup', 'list');
    assert.match(list.stdout, new RegExp(`gap before chain ${chains[1]!.record.chain}: revisions ${chains[0]!.to + 1} to ${chains[1]!.record.base.revision - 1} are not archived \\(compacted\\)`));
    const inGap = await cli('quorum', '--to-revision', String(chains[0]!.to + 1), '--dry-run');
    assert.equal(inGap.code, 4);
    assert.match(inGap.stderr, /is in no archive chain; restorable ranges: chain/);
    const t = new Date((chains[0]!.toAt + Date.parse(chains[1]!.record.base.createdAt)) / 2).toISOString();
    const between = await cli('backup', 'drill', '--to-time', t);
    assert.equal(between.code, 4, between.stderr);
    assert.match(between.stderr, /in the gap between two archive chains: the newest point before it is revision \d+/);
  });
});

async function waitForChains(sb: Sandbox, n: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if ((await listChains(storeFor(sb), sb.state.cluster)).length >= n) return;
    await sleep(200);
  }
  throw new Error(`no ${n} chains`);
}
