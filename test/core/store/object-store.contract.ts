import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { listAll, type ObjectStore } from '@etcd-recover/core';

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

/** A borrowing reader: each chunk is copied before the next is pulled (its memory may be reused). */
async function collectBorrowed(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function* chunks(buf: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/**
 * The one contract every ObjectStore implementation passes (memory, S3 on
 * MinIO in both checksum modes): what the core relies on, nothing more.
 */
export function objectStoreContract(name: string, make: () => Promise<{ store: ObjectStore; pageSize: number }>): void {
  describe(`ObjectStore contract: ${name}`, function () {
    let store: ObjectStore;
    let pageSize: number;
    const ns = `contract-${randomBytes(3).toString('hex')}/`;
    before(async () => {
      ({ store, pageSize } = await make());
      await store.probe();
    });

    it('streams an upload of unknown length across several parts and reads it back byte for byte', async () => {
      const body = randomBytes(11 * 1024 * 1024 + 123);
      const progress: number[] = [];
      const r = await store.upload(`${ns}big.db`, chunks(body, 32 * 1024), { onProgress: (p) => progress.push(p.bytes) });
      assert.equal(r.size, body.length);
      assert.ok(progress.length > 0);
      const back = await collect(store.get(`${ns}big.db`));
      assert.equal(back.length, body.length);
      assert.ok(back.equals(body));
      assert.equal((await store.head(`${ns}big.db`))!.size, body.length);
      assert.ok((await collectBorrowed(store.get(`${ns}big.db`, { borrow: true }))).equals(body), 'a borrowed read gives the same bytes');
    });

    it('puts and reads small objects; head and read of a missing key give undefined', async () => {
      assert.equal(await store.put(`${ns}a.json`, '{"a":1}'), true);
      assert.equal((await store.read(`${ns}a.json`))!.body.toString(), '{"a":1}');
      assert.equal(await store.read(`${ns}missing.json`), undefined);
      assert.equal(await store.head(`${ns}missing.json`), undefined);
    });

    it('get of a missing key fails with SNAPSHOT_NOT_FOUND', async () => {
      await assert.rejects(collect(store.get(`${ns}nope.db`)), (e: { code?: string }) => e.code === 'SNAPSHOT_NOT_FOUND');
      await assert.rejects(collectBorrowed(store.get(`${ns}nope.db`, { borrow: true })), (e: { code?: string }) => e.code === 'SNAPSHOT_NOT_FOUND');
    });

    it('honours ifNoneMatch (create-only) and ifMatch (compare-and-swap)', async () => {
      assert.equal(await store.put(`${ns}lock.json`, 'one', { ifNoneMatch: true }), true);
      assert.equal(await store.put(`${ns}lock.json`, 'two', { ifNoneMatch: true }), false);
      assert.equal((await store.read(`${ns}lock.json`))!.body.toString(), 'one');
      const { etag } = (await store.read(`${ns}lock.json`))!;
      assert.equal(await store.put(`${ns}lock.json`, 'three', { ifMatch: '"0000"' }), false);
      assert.equal(await store.put(`${ns}lock.json`, 'three', { ifMatch: etag! }), true);
      assert.equal((await store.read(`${ns}lock.json`))!.body.toString(), 'three');
    });

    it('lists every object under a prefix across pages, in key order, and deletes', async () => {
      const n = pageSize * 2 + 5;
      const keys = Array.from({ length: n }, (_, i) => `${ns}many/${String(i).padStart(5, '0')}`);
      for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, 'x')));
      const listed = await listAll(store, `${ns}many/`);
      assert.deepEqual(listed.map((o) => o.key), keys);
      assert.ok(listed.every((o) => o.size === 1));
      await store.delete(keys[0]!);
      assert.equal((await listAll(store, `${ns}many/`)).length, n - 1);
      await store.delete(`${ns}many/does-not-exist`);
    });
  });
}
