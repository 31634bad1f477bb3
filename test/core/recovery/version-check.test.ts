import { strict as assert } from 'node:assert';
import {
  Catalog,
  EtcdRecoverError,
  MemoryObjectStore,
  checkEtcdVersions,
  compareEtcdVersions,
  etcdVersionFromImage,
  parseEtcdVersion,
  planVersions,
  prepareQuorum,
  refusePlannedVersions,
  refuseVersionMismatch,
  targetEtcdVersion,
  type RecoveryTarget,
  type SnapshotRecord,
  type TargetEtcdVersion,
} from '@etcd-recover/core';
import { KubernetesRecoveryTarget } from '@etcd-recover/core/kubernetes';
import { KubeConfig } from '@kubernetes/client-node';
import type { RecoveryContract } from '@etcd-recover/core';
import { observeMembers, threeMembers } from '../../support/observations.js';

const check = (reported: string | undefined, storage: string | undefined, target: string | undefined, requireSame = false) =>
  checkEtcdVersions({ snapshot: { ...(reported ? { reported } : {}), ...(storage ? { storage } : {}) }, ...(target ? { target } : {}), requireSame });

describe('etcd version parsing', () => {
  it('parses releases, a leading v, pre-releases, build metadata and major.minor', () => {
    assert.deepEqual(parseEtcdVersion('3.6.16'), { major: 3, minor: 6, patch: 16 });
    assert.deepEqual(parseEtcdVersion('v3.5.21'), { major: 3, minor: 5, patch: 21 });
    assert.deepEqual(parseEtcdVersion('3.7.0-alpha.1'), { major: 3, minor: 7, patch: 0, pre: 'alpha.1' });
    assert.deepEqual(parseEtcdVersion('3.6.0+git.abc'), { major: 3, minor: 6, patch: 0 });
    assert.deepEqual(parseEtcdVersion('3.6'), { major: 3, minor: 6 });
    for (const bad of ['', 'latest', '3', '3.6.x', 'etcd 3.6.16', undefined]) assert.equal(parseEtcdVersion(bad), undefined, String(bad));
  });

  it('reads the version from an image tag, not from a registry port or a digest', () => {
    assert.equal(etcdVersionFromImage('registry.k8s.io/etcd:3.6.16-0'), '3.6.16');
    assert.equal(etcdVersionFromImage('quay.io/coreos/etcd:v3.6.16'), '3.6.16');
    assert.equal(etcdVersionFromImage('gcr.io/etcd-development/etcd:v3.7.0-alpha.1'), '3.7.0-alpha.1');
    assert.equal(etcdVersionFromImage('localhost:5000/etcd:3.5.21-0@sha256:0123'), '3.5.21');
    assert.equal(etcdVersionFromImage('localhost:5000/etcd'), undefined);
    assert.equal(etcdVersionFromImage('registry.k8s.io/etcd@sha256:0123abcd'), undefined);
    assert.equal(etcdVersionFromImage('etcd:latest'), undefined);
    assert.equal(etcdVersionFromImage(undefined), undefined);
  });

  it('orders versions: pre-release before its release, unparseable last', () => {
    const sorted = ['3.7.0', 'junk', '3.6.16', '3.7.0-alpha.1', 'v3.5.21', '3.6.2'].sort(compareEtcdVersions);
    assert.deepEqual(sorted, ['v3.5.21', '3.6.2', '3.6.16', '3.7.0-alpha.1', '3.7.0', 'junk']);
  });
});

describe('etcd version check', () => {
  it('the same release is ok, whatever the spelling', () => {
    const c = check('v3.6.16', '3.6.0', '3.6.16', true);
    assert.equal(c.verdict, 'ok');
    assert.equal(c.snapshot, '3.6.16');
  });

  it('a newer minor refuses, naming both versions, with the way out', () => {
    const c = check('3.7.0', '3.7.0', '3.6.16');
    assert.equal(c.verdict, 'refuse');
    assert.match(c.reason, /3\.7\.0.*3\.6\.16.*cannot downgrade/);
    assert.equal(c.hint, 'restore with etcd >= 3.7, or choose an older backup with --snapshot');
    assert.equal(check('3.7.0-alpha.1', undefined, '3.6.16').verdict, 'refuse');
    assert.equal(check('4.0.0', undefined, '3.6.16').verdict, 'refuse');
  });

  it("the snapshot's bytes win over its record: a storage version newer than the reported one refuses", () => {
    // A record saying 3.6.15 whose bbolt meta says 3.7.0: the data is 3.7's, whatever the record claims.
    const c = check('3.6.15', '3.7.0', '3.6.16');
    assert.equal(c.verdict, 'refuse');
    assert.match(c.reason, /storage version in its bytes \(3\.7\) wins/);
  });

  it('a member mid-upgrade writes its older storage version: the target of that minor reads it, with a warning', () => {
    const c = check('3.7.1', '3.6.0', '3.6.16');
    assert.equal(c.verdict, 'warn');
    assert.match(c.reason, /3\.7\.1.*storage version was still 3\.6.*3\.6\.16/);
    assert.equal(check('3.7.1', '3.6.0', '3.6.16', true).verdict, 'refuse');
  });

  it('a different patch level warns; --require-same-version refuses it', () => {
    for (const [snap, target] of [['3.6.15', '3.6.16'], ['3.6.16', '3.6.15']] as const) {
      const w = check(snap, '3.6.0', target);
      assert.equal(w.verdict, 'warn', `${snap} on ${target}`);
      assert.match(w.reason, new RegExp(`${snap.replace(/\./g, '\\.')}.*${target.replace(/\./g, '\\.')}.*patch level`));
      const r = check(snap, '3.6.0', target, true);
      assert.equal(r.verdict, 'refuse');
      assert.match(r.reason, /^--require-same-version: /);
      assert.match(r.hint!, new RegExp(`restore with etcd ${snap.replace(/\./g, '\\.')} .*drop --require-same-version`));
    }
  });

  it('a different pre-release of the same version warns', () => {
    assert.equal(check('3.7.0-rc.1', undefined, '3.7.0').verdict, 'warn');
    assert.equal(check('3.7.0-rc.1', undefined, '3.7.0', true).verdict, 'refuse');
  });

  it('an older minor warns (etcd upgrades it); more than one minor says it is unsupported', () => {
    const one = check('3.5.21', undefined, '3.6.16');
    assert.equal(one.verdict, 'warn');
    assert.match(one.reason, /upgraded/);
    const two = check('3.4.30', undefined, '3.6.16');
    assert.equal(two.verdict, 'warn');
    assert.match(two.reason, /one minor at a time/);
    assert.equal(check('3.5.21', undefined, '3.6.16', true).verdict, 'refuse');
  });

  it('an unknown version on either side warns, and refuses only under --require-same-version', () => {
    const t = check('3.6.16', undefined, undefined);
    assert.equal(t.verdict, 'warn');
    assert.match(t.reason, /target's etcd version is unknown/);
    assert.equal(check('3.6.16', undefined, 'not-a-version').verdict, 'warn');
    assert.equal(check(undefined, undefined, '3.6.16').verdict, 'warn');
    assert.equal(check('', undefined, '3.6.16').verdict, 'warn');
    const strict = check('3.6.16', undefined, undefined, true);
    assert.equal(strict.verdict, 'refuse');
    assert.match(strict.hint!, /etcd\.version/);
    assert.equal(check(undefined, undefined, '3.6.16', true).verdict, 'refuse');
  });

  it('a storage version alone gives the minor but not the release', () => {
    assert.equal(check(undefined, '3.6.0', '3.6.16').verdict, 'ok');
    assert.equal(check(undefined, '3.7.0', '3.6.16').verdict, 'refuse');
    assert.equal(check(undefined, '3.6.0', '3.6.16', true).verdict, 'refuse');
    assert.equal(check('3.6', undefined, '3.6.16').verdict, 'ok');
    assert.equal(check('3.6', undefined, '3.6.16', true).verdict, 'refuse');
  });

  it('every reason is one line', () => {
    const all = ['3.6.16', '3.6.15', '3.7.0', '3.5.21', '3.7.0-alpha.1', undefined];
    for (const r of all) for (const s of [undefined, '3.6.0', '3.7.0']) for (const t of all) for (const strict of [false, true]) {
      const c = check(r, s, t, strict);
      assert.ok(!/\n/.test(c.reason) && !/\n/.test(c.hint ?? ''), c.reason);
      if (c.verdict === 'refuse') assert.ok(c.hint, `a refusal has a hint: ${c.reason}`);
    }
  });
});

describe('the plan records the versions, and a refusal is a VERSION_MISMATCH', () => {
  it('shows an unknown target as null with its source, and refuses with exit 14', () => {
    const v = planVersions({ snapshot: { reported: '3.7.0', storage: '3.7.0', source: 'backup b' }, target: { version: '3.6.16', source: 'etcd --version' } });
    assert.equal(v.snapshot.version, '3.7.0');
    assert.equal(v.target.version, '3.6.16');
    assert.equal(v.verdict, 'refuse');
    assert.throws(
      () => refuseVersionMismatch(v, 'backup b'),
      (e: unknown) => e instanceof EtcdRecoverError && e.code === 'VERSION_MISMATCH' && e.exitCode === 14 && /backup b.*3\.7\.0.*3\.6\.16/.test(e.message) && e.hint === v.hint,
    );
    const unknown = planVersions({ snapshot: { reported: '3.6.16', source: 'backup b' } });
    assert.equal(unknown.target.version, null);
    assert.match(unknown.target.source, /^unknown/);
    assert.equal(unknown.verdict, 'warn');
    assert.doesNotThrow(() => refuseVersionMismatch(unknown, 'backup b'));
  });
});

describe('prepareQuorum checks the restore point against the target', () => {
  const now = new Date('2026-11-21T12:00:00Z');
  async function catalogWith(records: Partial<SnapshotRecord>[]): Promise<Catalog> {
    const store = new MemoryObjectStore();
    const catalog = new Catalog(store, 'c');
    for (const r of records) {
      const rec = { formatVersion: 1, cluster: 'c', clusterId: 'c1', totalKeys: 10, userKeys: 10, dbSize: 1 << 20, sha256: 'aa', hash: 1, raftIndex: 1, raftTerm: 1, ...r } as SnapshotRecord;
      rec.verification = { ok: true, at: rec.createdAt, by: 'create', sha256: rec.sha256, hash: 1, revision: rec.revision, totalKeys: rec.totalKeys, defects: [] };
      await store.put(`clusters/c/snapshots/${rec.name}.db`, 'x');
      await catalog.writeRecord(rec);
    }
    return catalog;
  }
  // Only what planning asks of a target; every step method is absent on purpose (planning changes nothing).
  const target = (observation: ReturnType<typeof observeMembers>, version?: TargetEtcdVersion | 'none') =>
    ({
      kind: 'sandbox',
      cluster: 'c',
      quiesces: false,
      describe: () => 'stub',
      members: () => threeMembers,
      observe: async () => observation,
      ...(version === undefined ? {} : { etcdVersion: async () => (version === 'none' ? undefined : version) }),
    }) as unknown as RecoveryTarget;
  const older = { name: 'full-20261121T100000000Z', revision: 900, createdAt: '2026-11-21T10:00:00.000Z', etcdVersion: '3.6.16', storageVersion: '3.6.0' };
  const newer = { name: 'full-20261121T110000000Z', revision: 1_000, createdAt: '2026-11-21T11:00:00.000Z', etcdVersion: '3.7.0', storageVersion: '3.7.0' };

  it('a backup of a newer minor is planned as refused, naming the newest backup it can restore', async () => {
    const catalog = await catalogWith([older, newer]);
    const prepared = await prepareQuorum({ target: target(observeMembers({}), { version: '3.6.16', source: 'stub' }), catalog, request: 'latest', now });
    const v = prepared.plan.versions!;
    assert.equal(prepared.plan.restorePoint?.name, newer.name);
    assert.deepEqual([v.snapshot.version, v.target.version, v.verdict], ['3.7.0', '3.6.16', 'refuse']);
    assert.match(v.hint!, new RegExp(`newest trusted backup it can restore: ${older.name}`));
    assert.ok(prepared.plan.warnings.some((w) => /REFUSED/.test(w)));
    assert.throws(() => refusePlannedVersions(prepared.plan), (e: unknown) => e instanceof EtcdRecoverError && e.code === 'VERSION_MISMATCH' && new RegExp(`backup ${newer.name}`).test(e.message));
  });

  it('without a version from the target, the live members stand in; without either it is unknown and only warns', async () => {
    const catalog = await catalogWith([{ ...older, etcdVersion: '3.6.15' }]);
    const alive = observeMembers({ 'etcd-2': 100 });
    const fromMembers = await prepareQuorum({ target: target(alive), catalog, request: 'latest', now });
    assert.equal(fromMembers.plan.versions!.target.version, '3.6.16');
    assert.match(fromMembers.plan.versions!.target.source, /etcd-2/);
    assert.equal(fromMembers.plan.versions!.verdict, 'warn');
    assert.ok(fromMembers.plan.warnings.some((w) => /3\.6\.15.*3\.6\.16.*patch level/.test(w)));
    const unknown = await prepareQuorum({ target: target(observeMembers({}), 'none'), catalog, request: 'latest', now });
    assert.equal(unknown.plan.versions!.target.version, null);
    assert.equal(unknown.plan.versions!.verdict, 'warn');
    assert.doesNotThrow(() => refusePlannedVersions(unknown.plan));
    const strict = await prepareQuorum({ target: target(observeMembers({}), 'none'), catalog, request: 'latest', now, requireSameVersion: true });
    assert.equal(strict.plan.versions!.verdict, 'refuse');
    assert.equal(strict.plan.request?.requireSameVersion, true);
  });

  it('a live restore point is judged by the version its member reports', async () => {
    const catalog = await catalogWith([]);
    const p = await prepareQuorum({ target: target(observeMembers({ 'etcd-1': 50 }), { version: '3.5.21', source: 'stub' }), catalog, now });
    assert.equal(p.plan.restorePoint?.kind, 'live');
    assert.deepEqual([p.plan.versions!.snapshot.version, p.plan.versions!.verdict], ['3.6.16', 'refuse']);
    assert.match(p.plan.versions!.snapshot.source, /live member etcd-1/);
  });

  it('the lowest version the members report is the target when they differ', async () => {
    const o = observeMembers({ 'etcd-0': 1, 'etcd-1': 1 });
    o.members[0]!.status!.version = '3.7.0';
    const t = await targetEtcdVersion(target(o), o);
    assert.equal(t?.version, '3.6.16');
    assert.match(t!.source, /lowest.*etcd-0 3\.7\.0/);
  });
});

describe("the Kubernetes target's etcd version", () => {
  const contract = (etcd: Partial<RecoveryContract['etcd']>) =>
    ({
      apiVersion: 'etcd-recover.io/v1',
      kind: 'RecoveryContract',
      cluster: 'etcd',
      namespace: 'ns',
      etcd: { statefulSet: 'etcd', containerName: 'etcd', image: 'registry.k8s.io/etcd:3.6.16-0', members: [], ...etcd },
      backup: { bucket: 'b', prefix: '' },
      agent: { image: 'agent', restoreServiceAccount: 'sa' },
      dependents: [],
    }) as unknown as RecoveryContract;
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [{ name: 'c', server: 'http://127.0.0.1:9' }], users: [{ name: 'u' }], contexts: [{ name: 'x', cluster: 'c', user: 'u' }], currentContext: 'x' });
  /** The target with its StatefulSet read stubbed (no API server here): `sts` undefined fails the read. */
  const targetWith = (c: RecoveryContract, containers?: { name: string; image: string }[]) => {
    const t = new KubernetesRecoveryTarget(kc, c);
    (t as unknown as { readStatefulSet: () => Promise<unknown> }).readStatefulSet = async () => {
      if (!containers) throw new Error('forbidden');
      return { spec: { template: { spec: { containers } } } };
    };
    return t;
  };

  it("takes the contract's etcd.version, else the live StatefulSet's image tag, else the contract's image", async () => {
    assert.deepEqual(await targetWith(contract({ version: '3.6.15' }), [{ name: 'etcd', image: 'registry.k8s.io/etcd:3.6.16-0' }]).etcdVersion(), { version: '3.6.15', source: 'recovery contract (etcd.version)' });
    const live = await targetWith(contract({}), [{ name: 'init', image: 'agent:1' }, { name: 'etcd', image: 'quay.io/coreos/etcd:v3.7.0' }]).etcdVersion();
    assert.equal(live?.version, '3.7.0');
    assert.match(live!.source, /statefulset ns\/etcd/);
    const declared = await targetWith(contract({})).etcdVersion();
    assert.equal(declared?.version, '3.6.16');
    assert.match(declared!.source, /in the recovery contract/);
    assert.equal(await targetWith(contract({ image: 'etcd@sha256:00' }), [{ name: 'etcd', image: 'etcd@sha256:00' }]).etcdVersion(), undefined);
  });
});
