#!/usr/bin/env node
// `npm run bench`: speed and memory of etcd-recover against the etcd tools, measured side by side in
// the same run on the same data (docs/benchmarks.md). Sizes in MB via BENCH_SIZES (default "100,1000");
// `--write` replaces the generated section of docs/benchmarks.md with this run's results.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { Sandbox } from '@etcd-recover/core';
import { measure } from './bench/measure.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'packages/kubectl-plugin/bin/kubectl-etcd_recover');
const env = { ...process.env };
for (const line of readFileSync(join(root, 'node_modules/.etcd-recover-binaries.env'), 'utf8').trim().split('\n')) {
  const [k, v] = line.split('=');
  env[k] = v;
  process.env[k] = v;
}
const etcdctl = join(env.ETCD_BIN_DIR, 'etcdctl');
const etcdutl = join(env.ETCD_BIN_DIR, 'etcdutl');
const sizes = (process.env.BENCH_SIZES ?? '100,1000').split(',').map(Number);
const MB = 1024 * 1024;
const log = (m) => process.stderr.write(`${m}\n`);

async function fill(endpoints, targetBytes) {
  const client = new Etcd3({ hosts: endpoints });
  const value = randomBytes(6 * 1024).toString('base64'); // 8 KiB, incompressible
  let i = 0;
  try {
    for (;;) {
      const status = await client.maintenance.status();
      if (Number(status.dbSize) >= targetBytes) return { keys: i, dbSize: Number(status.dbSize) };
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          const ops = [];
          for (let k = 0; k < 100; k++, i++) ops.push(client.put(`bench/${String(i).padStart(9, '0')}`).value(value));
          await client.if('bench/none', 'Version', '==', 0).then(...ops).commit();
        }),
      );
    }
  } finally {
    client.close();
  }
}

const rows = [];
const row = (size, what, ours, theirs, oursLabel, theirsLabel) =>
  rows.push({ size, what, oursMs: ours.ms, theirsMs: theirs?.ms, ratio: theirs ? ours.ms / theirs.ms : undefined, oursRss: ours.rss, theirsRss: theirs?.rss, oursLabel, theirsLabel });

for (const sizeMb of sizes) {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-recover-bench-'));
  const sb = await Sandbox.up({ dir, members: 3, cluster: 'bench' });
  const runEnv = { ...env, ETCD_RECOVER_SANDBOX: dir };
  try {
    log(`[${sizeMb} MB] filling a 3-member cluster…`);
    const filled = await fill(sb.endpoints(), sizeMb * MB);
    log(`[${sizeMb} MB] ${filled.keys} keys, db ${(filled.dbSize / MB).toFixed(0)} MiB`);
    const follower = sb.endpoints()[1];

    const ours = await measure(bin, ['backup', 'create', '-q', '-o', 'json', '--member', follower], { env: runEnv });
    const record = JSON.parse(ours.stdout);
    const file = join(dir, 'etcdctl.db');
    const theirs = await measure(etcdctl, ['--endpoints', follower, 'snapshot', 'save', file], { env: runEnv });
    row(sizeMb, 'backup create', ours, theirs, 'etcd → MinIO, verified in-pass', 'etcdctl snapshot save → local disk');

    const v = await measure(bin, ['backup', 'verify', '--file', file, '-q', '-o', 'json'], { env: runEnv });
    const st = await measure(etcdutl, ['snapshot', 'status', file, '-w', 'json'], { env: runEnv });
    const vr = JSON.parse(v.stdout).results[0];
    const sr = JSON.parse(st.stdout);
    if (vr.hash !== sr.hash || vr.revision !== sr.revision || vr.totalKeys !== sr.totalKey || vr.totalSize !== sr.totalSize) {
      throw new Error(`verify disagrees with etcdutl: ${JSON.stringify(vr)} vs ${JSON.stringify(sr)}`);
    }
    row(sizeMb, 'verify (local file)', v, st, 'native verifier', 'etcdutl snapshot status');
    const vb = await measure(bin, ['backup', 'verify', record.name, '-q', '-o', 'json'], { env: runEnv });
    row(sizeMb, 'verify (in the bucket)', vb, st, 'native verifier, streamed from MinIO', 'etcdutl snapshot status (local)');

    await Promise.all(sb.state.members.map((m) => sb.stopMember(m.name)));
    // Same runtime settings as the plugin's launcher (packages/kubectl-plugin/bin/kubectl-etcd_recover).
    const r = await measure(process.execPath, ['--max-semi-space-size=1', join(root, 'scripts/bench/restore-worker.mjs'), dir, record.name, 'rec-bench'], { env: { ...runEnv, MALLOC_ARENA_MAX: '2' } });
    const detail = JSON.parse(r.stdout);
    const base = join(dir, 'bare');
    const t0 = performance.now();
    let bareRss = 0;
    for (const [i, m] of sb.state.members.entries()) {
      const one = await measure(etcdutl, ['snapshot', 'restore', file, '--name', m.name, '--initial-cluster', sb.initialCluster(), '--initial-advertise-peer-urls', m.peerURL, '--data-dir', `${base}-${i}`, '--bump-revision', '1000000', '--mark-compacted'], { env: runEnv });
      bareRss = Math.max(bareRss, one.rss);
    }
    const bare = { ms: performance.now() - t0, rss: bareRss };
    row(sizeMb, '3-member restore', r, bare, `fetch + verify (${(detail.stageMs / 1000).toFixed(1)} s) + 3 etcdutl restores in parallel (${(detail.restoreMs / 1000).toFixed(1)} s)`, '3 × etcdutl snapshot restore (local file, sequential)');
    log(`[${sizeMb} MB] done`);
  } finally {
    await sb.down({ purge: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (ms) => (ms === undefined ? '' : `${(ms / 1000).toFixed(2)} s`);
const mb = (b) => (b ? `${(b / MB).toFixed(0)} MB` : '');
const cpu = cpus()[0]?.model ?? 'unknown CPU';
const etcdVersion = execFileSync(join(env.ETCD_BIN_DIR, 'etcd'), ['--version']).toString().split('\n')[0];
const lines = [
  `Run ${new Date().toISOString()} on ${cpus().length} × ${cpu}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, Node ${process.versions.node}, ${etcdVersion}, MinIO on loopback.`,
  '',
  '| DB | operation | etcd-recover | etcd tool | ratio | peak RSS (ours) | peak RSS (etcd tool) |',
  '|---:|---|---:|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.size} MB | ${r.what} | ${fmt(r.oursMs)} | ${fmt(r.theirsMs)} | ${r.ratio?.toFixed(2) ?? ''}x | ${mb(r.oursRss)} | ${mb(r.theirsRss)} |`),
  '',
  'What each side does:',
  ...[...new Map(rows.map((r) => [r.what, r])).values()].map((r) => `- ${r.what}: etcd-recover = ${r.oursLabel}; etcd tool = ${r.theirsLabel}.`),
];
console.log(lines.join('\n'));
if (process.argv.includes('--write')) {
  const doc = join(root, 'docs/benchmarks.md');
  const text = readFileSync(doc, 'utf8');
  const out = text.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, `<!-- bench:start -->\n${lines.join('\n')}\n<!-- bench:end -->`);
  writeFileSync(doc, out);
  log(`wrote ${doc}`);
}
