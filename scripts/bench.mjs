#!/usr/bin/env node
// `npm run bench`: speed and memory of etcd-recover against the etcd tools, measured side by side in
// the same run on the same data (docs/benchmarks.md). Sizes in MB via BENCH_SIZES (default "100,1000");
// `--write` replaces the generated section of docs/benchmarks.md with this run's results.
// Every operation runs BENCH_RUNS times (default 3), ours and the etcd tool's alternating, each
// after a `sync` (so no run pays for the previous one's writeback); the median is reported.
// The encryption rows (age) compare plain and encrypted backup create / verify on the same database,
// BENCH_ENC_RUNS times each (default 5), interleaved ABBA. BENCH_ONLY=encryption runs only those rows
// (BENCH_ONLY=tools only the others); by default both run. `--write` replaces only the sections that ran.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { Sandbox } from '@etcd-recover/core';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { measure } from './bench/measure.mjs';
import { benchArchive } from './bench/archive.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The plugin as it ships (the single executable, scripts/release-binary.mjs); BENCH_CLI=node runs the
// Node launcher (bin/kubectl-etcd_recover) instead. The start-up rows always measure both.
const exeBin = join(root, 'packages/kubectl-plugin/dist-bundle/kubectl-etcd_recover');
const nodeBin = join(root, 'packages/kubectl-plugin/bin/kubectl-etcd_recover');
execFileSync(process.execPath, [join(root, 'scripts/release-binary.mjs'), '--exe-only'], { stdio: 'inherit' });
const bin = process.env.BENCH_CLI === 'node' ? nodeBin : exeBin;
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
const encRuns = Number(process.env.BENCH_ENC_RUNS ?? 5);
const only = new Set((process.env.BENCH_ONLY ?? '').split(',').map((x) => x.trim()).filter(Boolean));
for (const g of only) if (!['tools', 'encryption', 'startup', 'archive'].includes(g)) throw new Error(`BENCH_ONLY: unknown group "${g}" (tools, encryption, startup, archive)`);
const startupRuns = Number(process.env.BENCH_STARTUP_RUNS ?? 15);
const want = (group) => !only.size || only.has(group);
// The encryption target of issue 14: encrypted create and verify cost at most this much of plain.
const ENC_TARGET = 1.15;
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

/**
 * Plain and encrypted, `encRuns` times each, interleaved ABBA (plain first in even pairs, encrypted
 * first in odd ones) so that drift of the machine hits both sides alike; each run after a sync.
 */
async function interleaved(plain, encrypted) {
  const p = [];
  const e = [];
  for (let i = 0; i < encRuns; i++) {
    const order = i % 2 === 0 ? [[plain, p], [encrypted, e]] : [[encrypted, e], [plain, p]];
    for (const [fn, out] of order) {
      execFileSync('sync');
      out.push(await fn(i));
    }
  }
  return [p, e];
}
const encRows = [];
const encRefs = [];
/** One encryption row from the runs of each side; `key` picks the number compared (ms: wall time). */
function encRow(size, what, how, p, e, key = 'ms') {
  const pm = median(p.map((x) => x[key]));
  const em = median(e.map((x) => x[key]));
  const ratio = em / pm;
  encRows.push({
    size, what, how, plainMs: pm, encMs: em, plainAll: p.map((x) => x[key]), encAll: e.map((x) => x[key]), ratio,
    pairRatios: p.map((x, i) => e[i][key] / x[key]), met: ratio <= ENC_TARGET,
    plainRss: key === 'ms' ? Math.max(...p.map((x) => x.rss)) : undefined, encRss: key === 'ms' ? Math.max(...e.map((x) => x.rss)) : undefined,
  });
}

const fmt = (ms) => (ms === undefined ? '' : `${(ms / 1000).toFixed(2)} s`);
/** The range of a side's runs, e.g. " (4.90–5.60)". */
const spread = (all) => (all && all.length > 1 ? ` (${(Math.min(...all) / 1000).toFixed(2)}–${(Math.max(...all) / 1000).toFixed(2)})` : '');
const msf = (ms) => `${Math.round(ms)} ms`;
const msSpread = (all) => ` (${Math.round(Math.min(...all))}–${Math.round(Math.max(...all))})`;
const mb = (b) => (b ? `${(b / MB).toFixed(0)} MB` : '');

const rows = [];
const refs = [];
const row = (size, what, ours, theirs, oursLabel, theirsLabel) =>
  rows.push({ size, what, oursMs: ours.ms, theirsMs: theirs?.ms, oursAll: ours.all, theirsAll: theirs?.all, ratio: theirs ? ours.ms / theirs.ms : undefined, pairRatios: theirs?.all ? ours.pairRatios : undefined, oursRss: ours.rss, theirsRss: theirs?.rss, oursLabel, theirsLabel });

// Start-up: whole processes, no cluster. `--help` (oclif's root help from the manifest) and the start
// of a command (its module loaded, its flags parsed: an unknown flag stops it right there, exit 2),
// the single executable and the Node launcher against etcdctl doing the same.
const startupRows = [];
if (want('startup')) {
  log(`start-up rows (${startupRuns} runs each, alternating)…`);
  const cases = [
    { what: '`--help`', ours: ['--help'], theirs: ['--help'] },
    { what: 'start of a command (`backup list --nope`: loaded, flags parsed, exit 2)', ours: ['backup', 'list', '--nope'], theirs: ['get', '--nope'] },
    { what: 'start of a command (`quorum --nope`)', ours: ['quorum', '--nope'], theirs: ['snapshot', 'save', '--nope'] },
  ];
  for (const c of cases) {
    const m = { exe: [], node: [], etcdctl: [] };
    for (let i = 0; i < startupRuns; i++) {
      const expectCode = c.ours.includes('--nope') ? 2 : 0;
      m.exe.push(await measure(exeBin, c.ours, { env, expectCode }));
      m.node.push(await measure(nodeBin, c.ours, { env, expectCode }));
      m.etcdctl.push(await measure(etcdctl, c.theirs, { env, expectCode: c.theirs.includes('--nope') ? 1 : 0 }));
    }
    const agg = (xs) => ({ ms: median(xs.map((x) => x.ms)), rss: Math.max(...xs.map((x) => x.rss)), all: xs.map((x) => x.ms) });
    startupRows.push({ what: c.what, exe: agg(m.exe), node: agg(m.node), etcdctl: agg(m.etcdctl), theirs: `etcdctl ${c.theirs.join(' ')}` });
  }
}

for (const sizeMb of (want('tools') || want('encryption') ? sizes : [])) {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-recover-bench-'));
  const sb = await Sandbox.up({ dir, members: 3, cluster: 'bench' });
  const runEnv = { ...env, ETCD_RECOVER_SANDBOX: dir };
  try {
    log(`[${sizeMb} MB] filling a 3-member cluster…`);
    const filled = await fill(sb.endpoints(), sizeMb * MB);
    log(`[${sizeMb} MB] ${filled.keys} keys, db ${(filled.dbSize / MB).toFixed(0)} MiB`);
    const follower = sb.endpoints()[1];

    let record;
    let file;
    if (want('tools')) {
      file = join(dir, 'etcdctl.db');
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
    }
    if (want('encryption')) {
      // Same cluster, same data: plain backups (no key) against backups encrypted for a fresh age key.
      log(`[${sizeMb} MB] encryption rows (${encRuns} runs each, interleaved)…`);
      const keyDir = join(dir, 'bench-age');
      mkdirSync(keyDir, { recursive: true });
      const identity = await generateX25519Identity();
      const idFile = join(keyDir, 'identity.txt');
      const pubFile = join(keyDir, 'recipients.txt');
      writeFileSync(idFile, `${identity}\n`, { mode: 0o600 });
      writeFileSync(pubFile, `${await identityToRecipient(identity)}\n`);
      const plainEnv = { ...runEnv };
      delete plainEnv.ETCD_RECOVER_AGE_RECIPIENTS_FILE;
      delete plainEnv.ETCD_RECOVER_AGE_IDENTITY_FILE;
      const ageFlags = ['--age-recipients-file', pubFile, '--age-identity-file', idFile];
      const create = (extra) => async () => {
        const r = await measure(bin, ['backup', 'create', '-q', '-o', 'json', '--member', follower, ...extra], { env: plainEnv });
        const rec = JSON.parse(r.stdout);
        return { ...r, rec, inMs: rec.durationMs };
      };
      const [cp, ce] = await interleaved(create([]), create(ageFlags));
      for (const c of ce) if (c.rec.encryption?.format !== 'age') throw new Error(`backup ${c.rec.name} is not encrypted: ${JSON.stringify(c.rec.encryption)}`);
      for (const c of cp) if (c.rec.encryption) throw new Error(`backup ${c.rec.name} is encrypted`);
      encRow(sizeMb, 'backup create', 'whole process (CLI start to exit)', cp, ce);
      encRow(sizeMb, 'backup create', "in-process (the record's durationMs: snapshot request to record)", cp, ce, 'inMs');
      const plainName = cp.at(-1).rec.name;
      const encName = ce.at(-1).rec.name;
      const objectMb = (c) => `${(c.rec.objectSize / MB).toFixed(1)} MiB`;
      log(`[${sizeMb} MB] plain backup ${plainName} (${objectMb(cp.at(-1))}), encrypted ${encName} (${objectMb(ce.at(-1))})`);

      const same = (a, b) => a.hash === b.hash && a.revision === b.revision && a.totalKeys === b.totalKeys;
      let vPlain;
      const verify = (name, extra) => async () => {
        const r = await measure(bin, ['backup', 'verify', name, '-q', '-o', 'json', ...extra], { env: plainEnv });
        const res = JSON.parse(r.stdout).results[0];
        if (!res.ok) throw new Error(`backup verify ${name} failed: ${r.stdout}`);
        vPlain ??= res;
        if (!same(res, vPlain)) throw new Error(`plain and encrypted backups verify differently: ${JSON.stringify(res)} vs ${JSON.stringify(vPlain)}`);
        return r;
      };
      const [vp, ve] = await interleaved(verify(plainName, []), verify(encName, ageFlags));
      encRow(sizeMb, 'backup verify NAME', 'whole process (CLI start to exit)', vp, ve);
      // The same read in-process (no Node.js/oclif start-up), and what it is made of.
      const worker = (name, mode, id) => async () => {
        const m = await measure(process.execPath, ['--max-semi-space-size=1', join(root, 'scripts/bench/verify-worker.mjs'), dir, name, mode, ...(id ? [id] : [])], { env: { ...plainEnv, MALLOC_ARENA_MAX: '2' } });
        const j = JSON.parse(m.stdout);
        return { ...m, ...j, ms: m.ms, inMs: j.ms };
      };
      const [ip, ie] = await interleaved(worker(plainName, 'verify'), worker(encName, 'verify', idFile));
      for (const x of [...ip, ...ie]) if (!same(x, vPlain)) throw new Error(`in-process verify disagrees: ${JSON.stringify(x)} vs ${JSON.stringify(vPlain)}`);
      encRow(sizeMb, 'backup verify NAME', 'in-process (verifyInBucket alone)', ip, ie, 'inMs');
      // Where the encrypted verify's time goes: the raw read of each object, then the encrypted one read
      // and decrypted without the verifier (interleaved with its raw read: the difference is the decryption).
      const [rp, re] = await interleaved(worker(plainName, 'read'), worker(encName, 'read'));
      const [re2, de] = await interleaved(worker(encName, 'read'), worker(encName, 'decrypt', idFile));
      const med = (xs) => median(xs.map((x) => x.inMs));
      encRefs.push({ size: sizeMb, what: 'read of the object from MinIO alone (no decryption, no verifier)', plain: med(rp), enc: med([...re, ...re2]) });
      encRefs.push({ size: sizeMb, what: 'read + decrypt, no verifier (readSnapshot); plain: the raw read', plain: med(rp), enc: med(de), extra: `decryption alone ≈ ${fmt(med(de) - med(re2))} (pairs with its raw read: ${de.map((x, i) => `${((x.inMs - re2[i].inMs) / 1000).toFixed(2)}`).join(' / ')} s)` });
      encRefs.push({ size: sizeMb, what: 'read + decrypt + native verifier (verifyInBucket, as the row above)', plain: med(ip), enc: med(ie), extra: `verifier's share ≈ plain ${fmt(med(ip) - med(rp))}, encrypted ${fmt(med(ie) - med(de))}` });
      const medOf = (xs, k) => median(xs.map((x) => x[k]));
      const thread = (xs, kind) => median(xs.map((x) => x.threads?.[kind] ?? 0));
      encRefs.push({ size: sizeMb, what: "verifyInBucket's main thread busy (event-loop active time: its CPU and any time it was preempted), and CPU of all its threads", plain: medOf(ip, 'mainMs'), enc: medOf(ie, 'mainMs'), extra: `all threads' CPU: plain ${fmt(medOf(ip, 'cpuMs'))}, encrypted ${fmt(medOf(ie, 'cpuMs'))} (MinIO's, on the same two cores, not counted); of it the main thread's CPU: plain ${fmt(thread(ip, 'MainThread'))}, encrypted ${fmt(thread(ie, 'MainThread'))}, the thread pool's (the decryption): ${ie.some((x) => x.threads?.['libuv-worker'] !== undefined) ? fmt(thread(ie, 'libuv-worker')) : 'not told apart (this Node.js does not name its threads)'}` });
      // The same encrypted verify with every chunk opened on the main thread (no native age opener).
      const [ie2, it2] = await interleaved(worker(encName, 'verify', idFile), worker(encName, 'verify-in-thread', idFile));
      encRefs.push({ size: sizeMb, what: 'encrypted verify in-process: native age opener (batches on the thread pool) vs every chunk opened on the main thread', plain: med(ie2), enc: med(it2), labels: ['native', 'in-thread'], extra: `in-thread/native ${(med(it2) / med(ie2)).toFixed(2)}x` });
    }
    if (want('tools')) {
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
    }
    log(`[${sizeMb} MB] done`);
  } finally {
    await sb.down({ purge: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const etcdVersion = execFileSync(join(env.ETCD_BIN_DIR, 'etcd'), ['--version']).toString().split('\n')[0];
const machine = `${cpus().length} × ${cpu}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, Node ${process.versions.node}, ${etcdVersion}, MinIO on loopback (same cores)`;
const sections = [];
if (want('tools')) {
  sections.push({
    marker: 'bench',
    lines: [
      `Run ${new Date().toISOString()} on ${machine}. Median of ${runs} runs each (their range in brackets), alternating, \`sync\` before each; the ratio is of the medians, and each alternating pair's ratio is listed too.`,
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
    ],
  });
}
if (want('startup')) {
  sections.push({
    marker: 'bench-startup',
    lines: [
      `Run ${new Date().toISOString()} on ${machine}. Whole processes from spawn to exit, median of ${startupRuns} runs each (their range in brackets), the three alternating; target ≤ 100 ms for etcd-recover.`,
      '',
      '| operation | single executable | Node launcher (bin/, before) | etcdctl (same step) | executable / etcdctl | executable / launcher | peak RSS exe / launcher / etcdctl |',
      '|---|---:|---:|---:|---:|---:|---:|',
      ...startupRows.map((r) => `| ${r.what} | ${msf(r.exe.ms)}${msSpread(r.exe.all)} | ${msf(r.node.ms)}${msSpread(r.node.all)} | ${msf(r.etcdctl.ms)}${msSpread(r.etcdctl.all)} (\`${r.theirs}\`) | ${(r.exe.ms / r.etcdctl.ms).toFixed(2)}x | ${(r.exe.ms / r.node.ms).toFixed(2)}x | ${mb(r.exe.rss)} / ${mb(r.node.rss)} / ${mb(r.etcdctl.rss)} |`),
    ],
  });
}
if (want('encryption')) {
  sections.push({
    marker: 'bench-encryption',
    lines: [
      `Run ${new Date().toISOString()} on ${machine}. Same cluster and data for both sides: plain backups (no key) and backups encrypted for one age X25519 recipient (\`--age-recipients-file\`/\`--age-identity-file\`). Median of ${encRuns} runs each (their range in brackets), interleaved ABBA, \`sync\` before each; the ratio is encrypted/plain of the medians, target ≤ ${ENC_TARGET}x, and each pair's ratio is listed too.`,
      '',
      `| DB | operation | measured | plain | encrypted | ratio (≤ ${ENC_TARGET}x) | met? | ratio of each pair | peak RSS plain | peak RSS encrypted |`,
      '|---:|---|---|---:|---:|---:|---|---:|---:|---:|',
      ...encRows.map((r) => `| ${r.size} MB | ${r.what} | ${r.how} | ${fmt(r.plainMs)}${spread(r.plainAll)} | ${fmt(r.encMs)}${spread(r.encAll)} | ${r.ratio.toFixed(2)}x | ${r.met ? 'yes' : `**no** (+${((r.ratio / ENC_TARGET - 1) * 100).toFixed(0)}% over)`} | ${r.pairRatios.map((x) => x.toFixed(2)).join(' / ')} | ${mb(r.plainRss)} | ${mb(r.encRss)} |`),
      '',
      'Where the encrypted verify spends its time (in-process, medians of the same run):',
      ...encRefs.map((r) => `- ${r.size} MB: ${r.what}: ${r.labels?.[0] ?? 'plain'} ${fmt(r.plain)}, ${r.labels?.[1] ?? 'encrypted'} ${fmt(r.enc)}${r.extra ? `; ${r.extra}` : ''}.`),
    ],
  });
}
if (want('archive')) {
  const a = await benchArchive({ bin, env, log });
  const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
  sections.push({
    marker: 'bench-archive',
    lines: [
      `Run ${new Date().toISOString()} on ${machine}. One run: ${a.writes} writes (256-byte values, 16 clients) offered at ${a.rate}/s for ${a.writes / a.rate} s into a 1-member etcd; achieved ${a.achieved.toFixed(0)}/s. The archiver (\`agent archive\`, the single executable, default 1 s flush) wrote ${a.segments} segments to MinIO on the same cores.`,
      '',
      '| measure | etcd-recover | reference | ratio | target | met? |',
      '|---|---:|---:|---:|---:|---|',
      `| archive lag, write acknowledged → segment listed, p50 | ${s(a.p50)} | Gardener delta snapshots: 20 s (their default interval, published) | ${(a.p50 / 20000).toFixed(3)}x | | |`,
      `| archive lag, p99 | ${s(a.p99)} (max ${s(a.max)}) | 20 s | ${(a.p99 / 20000).toFixed(3)}x | ≤ 1 s | ${a.p99 <= 1000 ? 'yes' : '**no**'} |`,
      `| replay, revisions/s (${a.replay.revisions} revisions replayed in ${a.replay.replaySeconds.toFixed(1)} s; the whole rebuild with fetch, restore and start ${a.replay.seconds.toFixed(1)} s) | ${a.replay.rate.toFixed(0)}/s | the same etcd's sequential one-put transactions: ${a.rawRate.toFixed(0)}/s (measured) | ${(a.replay.rate / a.rawRate).toFixed(2)}x | ≥ 20,000/s | ${a.replay.rate >= 20000 ? 'yes' : '**no**'} |`,
      `| archiver peak RSS | ${mb(a.archiverRss)} | | | | |`,
    ],
  });
}
for (const sec of sections) console.log(`${sec.lines.join('\n')}\n`);
if (process.argv.includes('--write')) {
  const doc = join(root, 'docs/benchmarks.md');
  let text = readFileSync(doc, 'utf8');
  for (const sec of sections) {
    const re = new RegExp(`<!-- ${sec.marker}:start -->[\\s\\S]*<!-- ${sec.marker}:end -->`);
    if (!re.test(text)) throw new Error(`docs/benchmarks.md has no <!-- ${sec.marker}:start --> … <!-- ${sec.marker}:end --> section`);
    text = text.replace(re, () => `<!-- ${sec.marker}:start -->\n${sec.lines.join('\n')}\n<!-- ${sec.marker}:end -->`);
  }
  writeFileSync(doc, text);
  log(`wrote ${doc}`);
}
