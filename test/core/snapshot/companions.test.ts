import { strict as assert } from 'node:assert';
import { generateX25519Identity } from 'age-encryption';
import {
  AgeKeys,
  Catalog,
  EtcdRecoverError,
  MemoryObjectStore,
  layout,
  readCompanions,
  restoreCompanions,
  storeCompanions,
  type CompanionBundle,
  type CompanionItem,
  type CompanionSink,
  type SnapshotRecord,
} from '@etcd-recover/core';

const bundle = (items: CompanionItem[]): CompanionBundle => ({ apiVersion: 'etcd-recover.io/v1', kind: 'CompanionBundle', namespace: 'hcp', capturedAt: '2026-12-02T00:00:00Z', items, missing: [] });
const secret = (name: string, v: string): CompanionItem => ({ kind: 'Secret', name, type: 'Opaque', data: { k: Buffer.from(v).toString('base64') } });

function memorySink(initial: CompanionItem[]): CompanionSink & { items: Map<string, CompanionItem>; writes: string[] } {
  const items = new Map(initial.map((i) => [`${i.kind}/${i.name}`, i]));
  const writes: string[] = [];
  return {
    items,
    writes,
    read: async (kind, name) => items.get(`${kind}/${name}`),
    create: async (i) => {
      writes.push(`create ${i.name}`);
      items.set(`${i.kind}/${i.name}`, i);
    },
    replace: async (i) => {
      writes.push(`replace ${i.name}`);
      items.set(`${i.kind}/${i.name}`, i);
    },
  };
}

describe('companion resources', () => {
  it('restore creates the missing, keeps the same, reports (never overwrites) the differing; overwrite replaces', async () => {
    const b = bundle([secret('gone', 'a'), secret('same', 'b'), secret('changed', 'c')]);
    const sink = memorySink([secret('same', 'b'), secret('changed', 'edited by hand')]);
    const out = await restoreCompanions(b, sink);
    assert.deepEqual(out.map((o) => `${o.name}:${o.action}`), ['gone:created', 'same:same', 'changed:differs']);
    assert.deepEqual(sink.writes, ['create gone']);
    assert.equal(Buffer.from(sink.items.get('Secret/changed')!.data!['k']!, 'base64').toString(), 'edited by hand');
    // A rerun is idempotent; --overwrite-companions replaces only the one that differs.
    assert.deepEqual((await restoreCompanions(b, sink)).map((o) => o.action), ['same', 'same', 'differs']);
    assert.deepEqual((await restoreCompanions(b, sink, { overwrite: true })).map((o) => o.action), ['same', 'same', 'replaced']);
    assert.deepEqual(sink.writes, ['create gone', 'replace changed']);
    // A dry run writes nothing.
    const dry = memorySink([]);
    assert.deepEqual((await restoreCompanions(b, dry, { dryRun: true })).map((o) => o.action), ['created', 'created', 'created']);
    assert.deepEqual(dry.writes, []);
  });

  it('are never stored without encryption', async () => {
    const catalog = new Catalog(new MemoryObjectStore(), 'c');
    await assert.rejects(storeCompanions(catalog, 'full-x', bundle([secret('s', 'v')])), (e: EtcdRecoverError) => e.code === 'ENCRYPTION_KEY' && /never stored unencrypted/.test(e.message));
    assert.equal(await catalog.store.head(layout.companionsObject('c', 'full-x')), undefined, 'nothing was written');
  });

  it('round-trip encrypted; a swapped object is refused by its sha256; a wrong key is ENCRYPTION_KEY', async () => {
    const keys = await AgeKeys.parse({ identities: await generateX25519Identity(), source: 'test' });
    const store = new MemoryObjectStore();
    const catalog = new Catalog(store, 'c', keys);
    const saved = await storeCompanions(catalog, 'full-1', bundle([secret('s', 'v1')]));
    const raw = (await store.read(saved.objectKey))!.body;
    assert.equal(raw.indexOf(Buffer.from('v1').toString('base64')), -1, 'no value in the clear');
    const record = { name: 'full-1', companions: saved } as SnapshotRecord;
    assert.equal((await readCompanions(catalog, record)).items[0]!.name, 's');
    // Another backup's companions put in its place: the sha256 in the record catches it.
    const other = await storeCompanions(catalog, 'full-2', bundle([secret('s', 'v2')]));
    await store.put(saved.objectKey, (await store.read(other.objectKey))!.body);
    await assert.rejects(readCompanions(catalog, record), (e: EtcdRecoverError) => e.code === 'SNAPSHOT_CORRUPT' && /do not match their record/.test(e.message));
    const stranger = new Catalog(store, 'c', await AgeKeys.parse({ identities: await generateX25519Identity(), source: 'stranger' }));
    await assert.rejects(readCompanions(stranger, { name: 'full-2', companions: other } as SnapshotRecord), (e: EtcdRecoverError) => e.code === 'ENCRYPTION_KEY');
    await assert.rejects(readCompanions(catalog, { name: 'full-3' } as SnapshotRecord), (e: EtcdRecoverError) => e.code === 'PRECONDITION' && /taken without companion resources/.test(e.message));
  });
});
