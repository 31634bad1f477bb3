// Child process of the benchmark (encryption rows): reads one backup of a sandbox from its bucket
// in-process and times only that, without Node.js/oclif start-up. Modes:
//   verify  — what `backup verify NAME` does: readSnapshot (decrypting when the record says so) into
//             the native verifier (verifyInBucket; the verification is not written back to the record);
//   decrypt — readSnapshot alone: the object read from MinIO and decrypted, no verifier;
//   read    — the raw object read from MinIO alone: no decryption, no verifier.
// `verify-in-thread` and `decrypt-in-thread`: the same without the native age opener (every chunk
// opened on this thread, as before it), for the comparison line.
// The age identity file, when given, opens encrypted backups. Prints {ms, bytes, ...}.
import { readFileSync, readdirSync } from 'node:fs';
import { AgeKeys, Catalog, S3ObjectStore, Sandbox, layout, nativeAge, readSnapshot, setAgeOpenLoader, verifyInBucket } from '@etcd-recover/core';

const [dir, name, how, identityFile] = process.argv.slice(2);
const mode = how.replace(/-in-thread$/, '');
if (how !== mode) setAgeOpenLoader(null);
else if (identityFile && !(await nativeAge())) throw new Error('the native age opener is not built (scripts/build-native.mjs)');
const sb = Sandbox.load(dir);
const store = new S3ObjectStore(sb.s3Config());
const keys = identityFile ? await AgeKeys.parse({ identities: readFileSync(identityFile, 'utf8'), source: `file ${identityFile}` }) : undefined;
const catalog = new Catalog(store, sb.state.cluster, keys);
const record = await catalog.get(name);
/** CPU ms of this process's threads by name (/proc/self/task: utime + stime, in clock ticks of 10 ms). */
function threadCpu() {
  const by = {};
  for (const t of readdirSync('/proc/self/task')) {
    try {
      // The main thread by its id (a Node.js that does not name its threads calls them all "node").
      const name = Number(t) === process.pid ? 'MainThread' : readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
      const f = readFileSync(`/proc/self/task/${t}/stat`, 'utf8').split(') ')[1].split(' ');
      by[`${name}#${t}`] = (Number(f[11]) + Number(f[12])) * 10;
    } catch {
      // the thread ended
    }
  }
  return by;
}
let bytes = 0;
let out = {};
const threads0 = threadCpu();
const elu0 = performance.eventLoopUtilization();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
if (mode === 'verify') {
  const v = await verifyInBucket(catalog, name, { record: false });
  if (!v.ok) throw new Error(`${name} did not verify: ${JSON.stringify(v.mismatches)} ${JSON.stringify(v.report.defects)}`);
  out = { hash: v.report.hash, revision: v.report.revision, totalKeys: v.report.totalKeys };
} else if (mode === 'decrypt') {
  for await (const c of readSnapshot(catalog, record, { borrow: true })) bytes += c.length;
} else if (mode === 'read') {
  for await (const c of store.get(layout.snapshotObject(catalog.cluster, name), { borrow: true })) bytes += c.length;
} else throw new Error(`unknown mode ${mode}`);
const ms = performance.now() - t0;
// The main thread's busy time (the event loop's active time: its CPU time and any time it was
// preempted) and the whole process's CPU time (every thread).
const mainMs = performance.eventLoopUtilization(elu0).active;
const cpu = process.cpuUsage(cpu0);
const cpuMs = (cpu.user + cpu.system) / 1000;
// Per kind of thread (main, libuv pool, V8 platform workers, the verifier's sha256 worker…).
const threads = {};
for (const [k, v] of Object.entries(threadCpu())) {
  const kind = k.replace(/#\d+$/, '');
  threads[kind] = (threads[kind] ?? 0) + v - (threads0[k] ?? 0);
}
store.destroy();
console.log(JSON.stringify({ ms, mainMs, cpuMs, threads, bytes, ...out }));
