#!/usr/bin/env node
// `npm run bench`: speed and memory of etcd-recover against the etcd tools, measured side by side in
// the same run on the same data (docs/benchmarks.md). Sizes in MB via BENCH_SIZES (default "100,1000");
// `--write` replaces the generated section of docs/benchmarks.md with this run's results.
// Every operation runs BENCH_RUNS times (default 3), ours and the etcd tool's alternating, each
// after a `sync` (so no run pays for the previous one's writeback); the median is reported.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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
const runs = Number(process.env.BENCH_RUNS ?? 3);
// The floor of any check of etcd's sha256 trailer: hashing the file and nothing else.
const sha256Tool = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return { cmd: 'openssl', args: (f) => ['dgst', '-sha256', f], label: 'openssl dgst -sha256' };
  } catch {
    return { cmd: process.execPath, args: (f) => ['-e', `const h=require('crypto').createHash('sha256');require('fs').createReadStream(${JSON.stringify(f)},{highWaterMark:1<<20}).on('data',(d)=>h.update(d)).on('end',()=>console.log(h.digest('hex')))`], label: 'sha256 in node:crypto' };
  }
})();
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

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** Runs each command `runs` times, alternating, each after a sync; median time, max peak RSS. */
async function sideBySide(ours, theirs, between = () => {}) {
  const o = [];
  const t = [];
  for (let i = 0; i < runs; i++) {
    execFileSync('sync');
    o.push(await ours(i));
    await between(i);
    if (theirs) {
      execFileSync('sync');
      t.push(await theirs(i));
      await between(i);
    }
  }
  const agg = (xs) => ({ ms: median(xs.map((x) => x.ms)), rss: Math.max(...xs.map((x) => x.rss)), all: xs.map((x) => x.ms) });
  const a = agg(o);
  // The ratio of each alternating pair: how far the machine's noise moves the comparison.
  if (theirs) a.pairRatios = o.map((x, i) => x.ms / t[i].ms);
  return [a, theirs ? agg(t) : undefined];
}

const rows = [];
const refs = [];
const row = (size, what, ours, theirs, oursLabel, theirsLabel) =>
  rows.push({ size, what, oursMs: ours.ms, theirsMs: theirs?.ms, oursAll: ours.all, theirsAll: theirs?.all, ratio: theirs ? ours.ms / theirs.ms : undefined, pairRatios: theirs?.all ? ours.pairRatios : undefined, oursRss: ours.rss, theirsRss: theirs?.rss, oursLabel, theirsLabel });

for (const sizeMb of sizes) {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-recover-bench-'));
  const sb = await Sandbox.up({ dir, members: 3, cluster: 'bench' });
  const runEnv = { ...env, ETCD_RECOVER_SANDBOX: dir };
  try {
    log(`[${sizeMb} MB] filling a 3-member cluster…`);
    const filled = await fill(sb.endpoints(), sizeMb * MB);
    log(`[${sizeMb} MB] ${filled.keys} keys, db ${(filled.dbSize / MB).toFixed(0)} MiB`);
    const follower = sb.endpoints()[1];

    const file = join(dir, 'etcdctl.db');
    let record;
    const [ours, theirs] = await sideBySide(
      async () => {
        const r = await measure(bin, ['backup', 'create', '-q', '-o', 'json', '--member', follower], { env: runEnv });
        record = JSON.parse(r.stdout);
        return r;
      },
      () => measure(etcdctl, ['--endpoints', follower, 'snapshot', 'save', file], { env: runEnv }),
    );
    row(sizeMb, 'backup create', ours, theirs, 'etcd → MinIO, verified in-pass', 'etcdctl snapshot save → local disk');
    // References: what the object store costs alone, and what the runbooks do by hand (save, then upload).
    const [upload] = await sideBySide(() => measure(process.execPath, ['--max-semi-space-size=1', join(root, 'scripts/bench/upload-worker.mjs'), dir, file], { env: { ...runEnv, MALLOC_ARENA_MAX: '2' } }));
    refs.push({ size: sizeMb, what: 'upload of the same bytes from the local file to MinIO alone (no etcd, no verification)', ms: upload.ms });
    row(sizeMb, 'backup create vs save + upload', ours, { ms: theirs.ms + upload.ms, rss: Math.max(theirs.rss, upload.rss) }, '(same run as above)', 'etcdctl snapshot save, then upload of the file (the manual runbook; sum of both medians)');

    let vr;
    let sr;
    const [v, st] = await sideBySide(
      async () => {
        const r = await measure(bin, ['backup', 'verify', '--file', file, '-q', '-o', 'json'], { env: runEnv });
        vr = JSON.parse(r.stdout).results[0];
        return r;
      },
      async () => {
        const r = await measure(etcdutl, ['snapshot', 'status', file, '-w', 'json'], { env: runEnv });
        sr = JSON.parse(r.stdout);
        return r;
      },
    );
    if (vr.hash !== sr.hash || vr.revision !== sr.revision || vr.totalKeys !== sr.totalKey || vr.totalSize !== sr.totalSize) {
      throw new Error(`verify disagrees with etcdutl: ${JSON.stringify(vr)} vs ${JSON.stringify(sr)}`);
    }
    row(sizeMb, 'verify (local file)', v, st, 'native verifier', 'etcdutl snapshot status');
    const [sha] = await sideBySide(() => measure(sha256Tool.cmd, sha256Tool.args(file), { env: runEnv }));
    refs.push({ size: sizeMb, what: `sha256 of the file alone (${sha256Tool.label}): the floor of any check of etcd's sha256 trailer, which etcdutl snapshot status does not make`, ms: sha.ms });
    const [vb] = await sideBySide(() => measure(bin, ['backup', 'verify', record.name, '-q', '-o', 'json'], { env: runEnv }));
    row(sizeMb, 'verify (in the bucket)', vb, st, 'native verifier, streamed from MinIO', 'etcdutl snapshot status (local)');

    await Promise.all(sb.state.members.map((m) => sb.stopMember(m.name)));
    const base = join(dir, 'bare');
    const cleanup = () => {
      // Set-aside folders of earlier runs and the bare restores: not part of what is timed.
      for (const m of sb.state.members) {
        const parent = dirname(m.dataDir);
        for (const e of readdirSync(parent)) if (e.includes('.before-')) rmSync(join(parent, e), { recursive: true, force: true });
      }
      for (let i = 0; i < sb.state.members.length; i++) rmSync(`${base}-${i}`, { recursive: true, force: true });
    };
    let detail;
    const [r, bare] = await sideBySide(
      async (i) => {
        // Same runtime settings as the plugin's launcher (packages/kubectl-plugin/bin/kubectl-etcd_recover).
        const m = await measure(process.execPath, ['--max-semi-space-size=1', join(root, 'scripts/bench/restore-worker.mjs'), dir, record.name, `rec-bench-${i}`], { env: { ...runEnv, MALLOC_ARENA_MAX: '2' } });
        detail = JSON.parse(m.stdout);
        return m;
      },
      async () => {
        const t0 = performance.now();
        let rss = 0;
        for (const [i, m] of sb.state.members.entries()) {
          const one = await measure(etcdutl, ['snapshot', 'restore', file, '--name', m.name, '--initial-cluster', sb.initialCluster(), '--initial-advertise-peer-urls', m.peerURL, '--data-dir', `${base}-${i}`, '--bump-revision', '1000000', '--mark-compacted'], { env: runEnv });
          rss = Math.max(rss, one.rss);
        }
        return { ms: performance.now() - t0, rss };
      },
      cleanup,
    );
    row(sizeMb, '3-member restore', r, bare, `fetch + verify (${(detail.stageMs / 1000).toFixed(1)} s) + 3 etcdutl restores in parallel (${(detail.restoreMs / 1000).toFixed(1)} s)`, '3 × etcdutl snapshot restore (local file, sequential)');
    log(`[${sizeMb} MB] done`);
  } finally {
    await sb.down({ purge: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (ms) => (ms === undefined ? '' : `${(ms / 1000).toFixed(2)} s`);
/** The range of a side's runs, e.g. " (4.90–5.60)". */
const spread = (all) => (all && all.length > 1 ? ` (${(Math.min(...all) / 1000).toFixed(2)}–${(Math.max(...all) / 1000).toFixed(2)})` : '');
const mb = (b) => (b ? `${(b / MB).toFixed(0)} MB` : '');
const cpu = cpus()[0]?.model ?? 'unknown CPU';
const etcdVersion = execFileSync(join(env.ETCD_BIN_DIR, 'etcd'), ['--version']).toString().split('\n')[0];
const lines = [
  `Run ${new Date().toISOString()} on ${cpus().length} × ${cpu}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, Node ${process.versions.node}, ${etcdVersion}, MinIO on loopback (same cores). Median of ${runs} runs each (their range in brackets), alternating, \`sync\` before each; the ratio is of the medians, and each alternating pair's ratio is listed too.`,
  '',
  '| DB | operation | etcd-recover | etcd tool | ratio | ratio of each pair | peak RSS (ours) | peak RSS (etcd tool) |',
  '|---:|---|---:|---:|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.size} MB | ${r.what} | ${fmt(r.oursMs)}${spread(r.oursAll)} | ${fmt(r.theirsMs)}${spread(r.theirsAll)} | ${r.ratio?.toFixed(2) ?? ''}x | ${r.pairRatios ? r.pairRatios.map((x) => x.toFixed(2)).join(' / ') : ''} | ${mb(r.oursRss)} | ${mb(r.theirsRss)} |`),
  '',
  'What each side does:',
  ...[...new Map(rows.map((r) => [r.what, r])).values()].map((r) => `- ${r.what}: etcd-recover = ${r.oursLabel}; etcd tool = ${r.theirsLabel}.`),
  '',
  'References measured in the same run (not ratios: what the machine itself costs):',
  ...refs.map((r) => `- ${r.size} MB: ${r.what}: ${fmt(r.ms)}.`),
];
console.log(lines.join('\n'));
if (process.argv.includes('--write')) {
  const doc = join(root, 'docs/benchmarks.md');
  const text = readFileSync(doc, 'utf8');
  const out = text.replace(/<!-- bench:start -->[\s\S]*<!-- bench:end -->/, `<!-- bench:start -->\n${lines.join('\n')}\n<!-- bench:end -->`);
  writeFileSync(doc, out);
  log(`wrote ${doc}`);
}
