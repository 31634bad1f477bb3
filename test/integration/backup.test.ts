import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { Catalog, layout, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { binaries } from '../support/binaries.js';
import { json, runCli } from '../support/cli.js';
import { startSandbox, stopSandbox, storeFor, tempDir, writeKeys } from '../support/sandbox.js';

describe('backups on a real 3-member etcd and MinIO', function () {
  this.timeout(300_000);
  let sb: Sandbox;
  const tmp = tempDir();
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', sb.dir]);

  before(async () => {
    sb = await startSandbox({ members: 3, cluster: 'backup-it' });
    await writeKeys(sb.endpoints(), 100_000, 'k/', 32);
  });
  after(async () => {
    await stopSandbox(sb);
    tmp.remove();
  });

  let created: SnapshotRecord;

  it('backup create streams a verified snapshot from a follower into the bucket, with its catalog record', async () => {
    const r = await cli('backup', 'create', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    created = json<SnapshotRecord>(r);
    assert.equal(created.cluster, 'backup-it');
    assert.match(created.name, /^full-\d{8}T\d{9}Z$/);
    assert.ok(created.totalKeys >= 100_000, `totalKeys ${created.totalKeys}`);
    assert.equal(created.verification?.ok, true);
    assert.equal(created.formatVersion, 1);
    for (const f of ['clusterId', 'sourceMember', 'revision', 'raftIndex', 'raftTerm', 'etcdVersion', 'dbSize', 'sha256', 'createdAt', 'toolVersion'] as const) {
      assert.ok(created[f] !== undefined && created[f] !== '', `record has ${f}`);
    }
    // Snapshotted from a follower, not the leader.
    const status = JSON.parse(execFileSync(binaries().etcdctl, ['--endpoints', sb.endpoints().join(','), 'endpoint', 'status', '-w', 'json']).toString()) as { Endpoint: string; Status: { header: { member_id: number }; leader: number } }[];
    const leader = status.find((s) => s.Status.header.member_id === s.Status.leader)!;
    assert.notEqual(created.sourceMember.endpoint, leader.Endpoint);
    // Progress went to stderr, the result alone to stdout.
    assert.match(r.stderr, /snapshotting http:\/\/127\.0\.0\.1:\d+ \(caught-up follower/);
    // Object and record are both in the bucket, object ends with the sha256 trailer.
    const store = storeFor(sb);
    const head = await store.head(layout.snapshotObject('backup-it', created.name));
    assert.equal(head!.size, created.objectSize);
    assert.ok(await store.head(layout.snapshotRecord('backup-it', created.name)));
  });

  it('backup verify in the bucket agrees with etcdutl snapshot status of an etcdctl snapshot at the same revision', async () => {
    const file = join(tmp.path, 'etcdctl.db');
    execFileSync(binaries().etcdctl, ['--endpoints', sb.endpoints()[0]!, 'snapshot', 'save', file], { stdio: 'ignore' });
    const status = JSON.parse(execFileSync(binaries().etcdutl, ['snapshot', 'status', file, '-w', 'json']).toString()) as { revision: number; totalKey: number; totalSize: number; hash: number };
    const r = await cli('backup', 'verify', created.name, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const v = json(r);
    assert.equal(v.ok, true);
    assert.equal(v.results[0].revision, status.revision);
    assert.equal(v.results[0].totalKeys, status.totalKey);
    assert.equal(v.results[0].revision, created.revision);
    // The local file verifies natively too, with exactly etcdutl's numbers.
    const local = json(await cli('backup', 'verify', '--file', file, '-o', 'json'));
    assert.deepEqual(
      { revision: local.results[0].revision, totalKeys: local.results[0].totalKeys, totalSize: local.results[0].totalSize, hash: local.results[0].hash },
      { revision: status.revision, totalKeys: status.totalKey, totalSize: status.totalSize, hash: status.hash },
    );
    // The verification is recorded in the catalog.
    const rec = await new Catalog(storeFor(sb), 'backup-it').get(created.name);
    assert.equal(rec.verification?.by, 'verify');
    assert.equal(rec.verification?.ok, true);
  });

  it('backup list shows complete backups newest first, never an interrupted upload', async () => {
    const second = json<SnapshotRecord>(await cli('backup', 'create', '-o', 'json', '-q'));
    // An upload that never got its record: what a crash mid-upload leaves.
    await storeFor(sb).put(layout.snapshotObject('backup-it', 'full-20990101T000000000Z'), Buffer.alloc(10), { contentType: 'application/octet-stream' });
    const r = await cli('backup', 'list', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const listing = json(r);
    assert.deepEqual(listing.snapshots.map((s: SnapshotRecord) => s.name), [second.name, created.name]);
    assert.deepEqual(listing.incomplete, []);
    const all = json(await cli('backup', 'list', '--all', '-o', 'json'));
    assert.deepEqual(all.incomplete.map((i: { name: string }) => i.name), ['full-20990101T000000000Z']);
    const table = await cli('backup', 'list');
    assert.match(table.stdout.split('\n')[0]!, /^NAME\s+AGE\s+REVISION\s+KEYS\s+SIZE\s+VERIFIED\s+ENCRYPTED$/);
    assert.equal(table.stdout.trim().split('\n').length, 3);
    assert.match(table.stdout.split('\n')[1]!, /\sno$/, 'a plain backup says it is not encrypted');
    const yaml = await cli('backup', 'list', '-o', 'yaml');
    assert.match(yaml.stdout, /^snapshots:\n  - formatVersion: 1/);
  });

  it('a catalog record whose sha256 disagrees with the object fails verification (exit 3)', async () => {
    const store = storeFor(sb);
    const key = layout.snapshotRecord('backup-it', created.name);
    const rec = JSON.parse((await store.read(key))!.body.toString()) as SnapshotRecord;
    const original = JSON.stringify(rec);
    rec.sha256 = 'f'.repeat(64);
    await store.put(key, JSON.stringify(rec));
    const r = await cli('backup', 'verify', created.name);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stderr, /sha256 [0-9a-f]{12}… differs from the catalog record's ffffffffffff…/);
    await store.put(key, original);
  });

  it('backup verify --file rejects bad input with a message naming the defect (exit 3)', async () => {
    const good = join(tmp.path, 'etcdctl.db');
    const bytes = readFileSync(good);
    const cases: [string, Buffer, RegExp][] = [
      ['empty', Buffer.alloc(0), /empty/i],
      ['truncated', bytes.subarray(0, Math.floor(bytes.length / 2)), /truncat/i],
      ['text', Buffer.from('this is not a snapshot\n'.repeat(100)), /not a bbolt|not an etcd/i],
      ['trailer-wrong', Buffer.concat([bytes.subarray(0, bytes.length - 32), Buffer.alloc(32, 7)]), /trailer|sha256/i],
    ];
    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 32 - 4096 * 3 + 100]! ^= 0xff;
    cases.push(['flipped-data', flipped, /sha256|trailer|page/i]);
    const meta = Buffer.from(bytes);
    meta[20]! ^= 0xff;
    cases.push(['flipped-meta', meta, /meta/i]);
    for (const [name, buf, re] of cases) {
      const f = join(tmp.path, `${name}.db`);
      writeFileSync(f, buf);
      const r = await runCli(['backup', 'verify', '--file', f]);
      assert.equal(r.code, 3, `${name}: exit ${r.code}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, re, `${name}: ${r.stderr}`);
    }
    const stripped = join(tmp.path, 'no-trailer.db');
    writeFileSync(stripped, bytes.subarray(0, bytes.length - 32));
    assert.equal((await runCli(['backup', 'verify', '--file', stripped])).code, 0, 'a raw db without trailer is fine by default');
    const r = await runCli(['backup', 'verify', '--file', stripped, '--require-trailer']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /trailer/i);
  });

  it('backup verify --file refuses a real snapshot cut at any length that is not whole pages (+ the full trailer), and never shows a raw copy as plain OK', async () => {
    const bytes = readFileSync(join(tmp.path, 'etcdctl.db'));
    const ps = json(await runCli(['backup', 'verify', '--file', join(tmp.path, 'etcdctl.db'), '-o', 'json'])).results[0].pageSize;
    assert.ok(ps >= 4096, `page size ${ps}`);
    const pages = bytes.length - 32;
    assert.equal(pages % ps, 0, 'an etcdctl snapshot is whole pages plus the trailer');
    // Trailer cut short, a raw copy grown past its high-water mark and cut mid-page, cut inside the pages.
    const grown = Buffer.concat([bytes.subarray(0, pages), Buffer.alloc(2 * ps)]);
    const cuts: [string, Buffer][] = [
      ...[1, 5, 31].map((n) => [`trailer-minus-${n}`, bytes.subarray(0, bytes.length - n)] as [string, Buffer]),
      ...[1, ps + 700, 2 * ps - 1].map((n) => [`raw-plus-${n}`, grown.subarray(0, pages + n)] as [string, Buffer]),
      ['mid-pages', bytes.subarray(0, pages - ps - 123)],
    ];
    for (const [name, buf] of cuts) {
      const f = join(tmp.path, `cut-${name}.db`);
      writeFileSync(f, buf);
      const r = await runCli(['backup', 'verify', '--file', f]);
      assert.equal(r.code, 3, `${name}: exit ${r.code}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`file length ${buf.length} bytes is neither whole ${ps}-byte pages`), `${name}: ${r.stderr}`);
      assert.match(r.stdout, /CORRUPT/);
      const j = await runCli(['backup', 'verify', '--file', f, '-o', 'json']);
      assert.equal(j.code, 3);
      assert.equal(json(j).results[0].ok, false);
    }
    // Whole pages without the trailer: intact, but "integrity not proven" in every format.
    const raw = join(tmp.path, 'no-trailer.db');
    const table = await runCli(['backup', 'verify', '--file', raw]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /OK, integrity not proven/);
    assert.match(table.stdout, /integrity not proven: no sha256 trailer/);
    const j = json(await runCli(['backup', 'verify', '--file', raw, '-o', 'json'])).results[0];
    assert.deepEqual({ ok: j.ok, hasTrailer: j.hasTrailer, integrityProven: j.integrityProven }, { ok: true, hasTrailer: false, integrityProven: false });
    const y = await runCli(['backup', 'verify', '--file', raw, '-o', 'yaml']);
    assert.match(y.stdout, /integrityProven: false/);
    const proven = json(await runCli(['backup', 'verify', '--file', join(tmp.path, 'etcdctl.db'), '-o', 'json'])).results[0];
    assert.deepEqual({ ok: proven.ok, integrityProven: proven.integrityProven }, { ok: true, integrityProven: true });
    assert.doesNotMatch((await runCli(['backup', 'verify', '--file', join(tmp.path, 'etcdctl.db')])).stdout, /not proven/);
  });

  it('backup prune --dry-run shows decisions and deletes nothing; prune keeps the newest verified', async () => {
    const before = json(await cli('backup', 'list', '-o', 'json')).snapshots.length;
    const dry = await cli('backup', 'prune', '--dry-run', '--keep-last', '1', '--keep-within', '0', '--hourly', '0', '--daily', '0', '--weekly', '0', '-o', 'json');
    assert.equal(dry.code, 0, dry.stderr);
    const plan = json(dry);
    assert.equal(plan.dryRun, true);
    assert.equal(plan.deleted.length, before - 1);
    assert.equal(json(await cli('backup', 'list', '-o', 'json')).snapshots.length, before);
    // Without a terminal and without --yes, a destructive prune refuses.
    const refused = await cli('backup', 'prune', '--keep-last', '1', '--keep-within', '0', '--hourly', '0', '--daily', '0', '--weekly', '0');
    assert.equal(refused.code, 8, refused.stderr);
    assert.match(refused.stderr, /refusing without confirmation/);
    const done = await cli('backup', 'prune', '--yes', '--keep-last', '1', '--keep-within', '0', '--hourly', '0', '--daily', '0', '--weekly', '0', '-o', 'json');
    assert.equal(done.code, 0, done.stderr);
    const after = json(await cli('backup', 'list', '-o', 'json')).snapshots;
    assert.equal(after.length, 1);
    assert.deepEqual(json(done).deleted, plan.deleted);
  });

  it('backup drill restores the newest verified backup into a throwaway cluster and proves it', async () => {
    const newest = json(await cli('backup', 'list', '-o', 'json')).snapshots[0];
    const r = await cli('backup', 'drill', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const report = json(r);
    assert.equal(report.backup, newest.name);
    assert.equal(report.keys, newest.userKeys);
    assert.equal(report.members.length, 3);
    assert.ok(report.revisionAfter > newest.revision);
    assert.equal(new Set(report.members.map((m: { hashKV: number }) => m.hashKV)).size, 1);
    assert.match(r.stderr, /all 3 members hold the same keyspace/);
  });

  it('without a target or bucket, commands say what to pass (exit 2)', async () => {
    const r = await runCli(['backup', 'list']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no backup bucket/);
    assert.match(r.stderr, /next:/);
  });
});
