// The archive rows of `npm run bench` (BENCH_ONLY=archive): continuous archiving under a sustained
// write load, and the point-in-time replay. Measured in one run:
// - lag from a write's acknowledgement to the moment a segment holding it is listed in the bucket
//   (p50/p99), at BENCH_ARCHIVE_RATE writes/s (default 1000) for BENCH_ARCHIVE_SECONDS (default 30),
//   with the archiver at its default 1 s flush interval;
// - the archiver's peak RSS over that run;
// - replay throughput (revisions/s) rebuilding the newest revision in a temporary etcd, beside the
//   same etcd build's own rate of sequential one-put transactions (the ceiling of a replay that
//   applies one transaction per original revision, in order).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { Catalog, S3ObjectStore, Sandbox, listChains, replayToRevision, resolvePoint } from '@etcd-recover/core';

const hwm = (pid) => {
  try {
    return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function benchArchive({ bin, env, log }) {
  const rate = Number(process.env.BENCH_ARCHIVE_RATE ?? 1000);
  const seconds = Number(process.env.BENCH_ARCHIVE_SECONDS ?? 30);
  const dir = mkdtempSync(join(tmpdir(), 'etcd-recover-bench-archive-'));
  const sb = await Sandbox.up({ dir, members: 1, cluster: 'bench' });
  const store = new S3ObjectStore(sb.s3Config());
  const catalog = new Catalog(store, 'bench');
  const archiver = spawn(bin, ['agent', 'archive', '--sandbox-dir', dir], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let archLog = '';
  archiver.stderr.on('data', (d) => (archLog += d));
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, hwm(archiver.pid))), 50);
  const client = new Etcd3({ hosts: sb.endpoints() });
  try {
    for (let i = 0; i < 600 && !(await listChains(store, 'bench')).length; i++) await sleep(100);
    if (!(await listChains(store, 'bench')).length) throw new Error(`the archiver started no chain: ${archLog}`);
    // When each segment was first listed (polled every 50 ms while the writes run and after).
    const seen = new Map();
    let watching = true;
    const lister = (async () => {
      while (watching) {
        const t = performance.now();
        for (const c of await listChains(store, 'bench')) for (const s of c.segments) if (!seen.has(s.key)) seen.set(s.key, { first: s.first, last: s.last, at: t });
        await sleep(50);
      }
    })();
    const acks = [];
    const value = 'x'.repeat(256);
    const total = rate * seconds;
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (;;) {
          const i = next++;
          if (i >= total) return;
          const wait = t0 + (i * 1000) / rate - performance.now();
          if (wait > 0) await sleep(wait);
          const r = await client.put(`load/${i % 5000}`).value(value).exec();
          acks.push({ rev: Number(r.header.revision), at: performance.now() });
        }
      }),
    );
    const achieved = total / ((performance.now() - t0) / 1000);
    const lastRev = Math.max(...acks.map((a) => a.rev));
    for (let i = 0; i < 600 && ![...seen.values()].some((s) => s.last >= lastRev); i++) await sleep(50);
    watching = false;
    await lister;
    const segs = [...seen.values()].sort((a, b) => a.first - b.first);
    const lags = acks.map((a) => {
      const s = segs.find((x) => x.first <= a.rev && a.rev <= x.last);
      return s ? s.at - a.at : NaN;
    });
    const missing = lags.filter((x) => Number.isNaN(x)).length;
    if (missing) throw new Error(`${missing} acknowledged writes are in no segment`);
    log(`[archive] ${total} writes at ${achieved.toFixed(0)}/s, ${segs.length} segments`);

    // Replay: the newest revision rebuilt from the chain.
    const point = await resolvePoint(catalog, { revision: lastRev });
    const replayed = await replayToRevision({ catalog, point });
    await replayed.close();
    // The ceiling: the same etcd's sequential one-put transactions, one client, on this machine.
    const n = 5000;
    const r0 = performance.now();
    for (let i = 0; i < n; i++) await client.put(`raw/${i % 1000}`).value(value);
    const rawRate = n / ((performance.now() - r0) / 1000);
    return {
      rate,
      achieved,
      writes: total,
      segments: segs.length,
      p50: pct(lags, 50),
      p99: pct(lags, 99),
      max: Math.max(...lags),
      archiverRss: peak,
      replay: { revisions: replayed.replayed, seconds: replayed.seconds, replaySeconds: replayed.replaySeconds, rate: replayed.replayed / replayed.replaySeconds },
      rawRate,
    };
  } finally {
    clearInterval(sampler);
    client.close();
    archiver.kill('SIGTERM');
    await new Promise((r) => (archiver.exitCode !== null ? r() : archiver.on('close', r)));
    await sb.down({ purge: true });
    rmSync(dir, { recursive: true, force: true });
  }
}
