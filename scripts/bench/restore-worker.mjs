// Child process of the benchmark: our restore of every member of a stopped sandbox from a backup
// (fetch + native verification + etcdutl restore per member), so that its peak RSS can be measured.
import { Catalog, S3ObjectStore, Sandbox, SandboxTarget } from '@etcd-recover/core';

const [dir, name, id] = process.argv.slice(2);
const sb = Sandbox.load(dir);
const target = new SandboxTarget(sb);
const store = new S3ObjectStore(sb.s3Config());
const catalog = new Catalog(store, sb.state.cluster);
const record = await catalog.get(name);
const ctx = { recoveryId: id, catalog, progress: () => {}, facts: {} };
for (const m of target.members()) await target.setAside(m.name, ctx);
const t0 = performance.now();
await target.stageSnapshot(record, ctx);
const staged = performance.now();
const members = target.members();
await Promise.all(members.map((m) => target.restoreMember(m.name, record, { members, token: 'bench', bump: 1_000_000 }, ctx)));
const done = performance.now();
store.destroy();
console.log(JSON.stringify({ stageMs: staged - t0, restoreMs: done - staged }));
