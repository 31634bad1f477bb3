import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { EtcdRecoverError } from '@etcd-recover/core';
import { startMoto, type Moto } from '../../support/moto.js';
import { objectStoreContract } from './object-store.contract.js';

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

/**
 * The same store against a second, independent S3 implementation (moto in server mode), addressed
 * as AWS addresses buckets — virtual-hosted, `<bucket>.s3.localhost:PORT` — with IAM authentication
 * enforced and the SDK's checksums in both modes.
 */
describe('S3 object store on moto (virtual-hosted addressing, IAM auth enforced)', function () {
  let moto: Moto;
  before(async () => {
    moto = await startMoto();
  });
  after(async () => moto?.stop());

  objectStoreContract('S3 (moto), checksums when_supported', async () => ({ store: moto.store({ checksumMode: 'when_supported' }), pageSize: 1000 }));
  objectStoreContract('S3 (moto), checksums when_required, small pages', async () => ({ store: moto.store({ checksumMode: 'when_required', listPageSize: 9 }), pageSize: 9 }));

  describe('every request names the bucket in the Host header, never in the path', () => {
    /** A recording HTTP proxy in front of moto (Host kept, so signatures still verify). */
    async function recordingProxy(target: string) {
      const seen: { method: string; host: string; path: string; headers: IncomingHttpHeaders }[] = [];
      const t = new URL(target);
      const server = createServer((req, res) => {
        seen.push({ method: req.method!, host: req.headers.host!, path: req.url!, headers: req.headers });
        const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        });
        up.on('error', () => res.destroy());
        req.pipe(up);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const { port } = server.address() as { port: number };
      return { port, seen, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
    }

    it('put, multipart upload, read, list, SDK get and the direct GET all go to <bucket>.s3.localhost', async () => {
      const proxy = await recordingProxy(moto.url);
      try {
        const store = moto.store({ endpoint: `http://s3.localhost:${proxy.port}` });
        const key = `vhost/${randomBytes(3).toString('hex')}.db`;
        const body = randomBytes(6 * 1024 * 1024 + 11);
        await store.upload(key, (async function* () {
          for (let i = 0; i < body.length; i += 1 << 20) yield body.subarray(i, i + (1 << 20));
        })());
        assert.equal(await store.put('vhost/a.json', '{}'), true);
        assert.equal((await store.read('vhost/a.json'))!.body.toString(), '{}');
        const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
        const sdk = createHash('sha256');
        for await (const c of store.get(key)) sdk.update(c);
        assert.equal(sdk.digest('hex'), sha(body));
        const direct = createHash('sha256');
        const memory = new Set<ArrayBufferLike>();
        for await (const c of store.get(key, { borrow: true })) {
          direct.update(c);
          memory.add(c.buffer);
        }
        assert.equal(direct.digest('hex'), sha(body));
        assert.ok(memory.size <= 4, `the borrowed read came through the direct GET (${memory.size} buffers)`);
        let listed = 0;
        for await (const _ of store.list('vhost/')) listed++;
        assert.equal(listed, 2);

        const want = `${moto.bucket}.s3.localhost:${proxy.port}`;
        assert.ok(proxy.seen.length >= 7, `${proxy.seen.length} requests`);
        for (const r of proxy.seen) {
          assert.equal(r.host, want, `${r.method} ${r.path}`);
          assert.ok(!r.path.startsWith(`/${moto.bucket}`), `no bucket in the path: ${r.method} ${r.path}`);
        }
        // Each kind of request by its method and first query parameter (the SDK's x-id aside).
        const kind = (r: { method: string; path: string }) => `${r.method} ${[...new URL(r.path, 'http://x').searchParams.keys()].filter((k) => k !== 'x-id')[0] ?? ''}`;
        const methods = new Set(proxy.seen.map(kind));
        for (const m of ['POST uploads', 'PUT partNumber', 'POST uploadId', 'PUT ', 'GET ', 'GET list-type']) assert.ok(methods.has(m), `${m} in ${[...methods].join(', ')}`);
        // The direct GET is the request without the SDK's user agent.
        assert.ok(proxy.seen.some((r) => r.method === 'GET' && r.path === `/${key}` && !r.headers['x-amz-user-agent'] && r.headers.authorization), 'a direct GET, signed, virtual-hosted');
      } finally {
        await proxy.close();
      }
    });
  });

  describe('failures name the problem in one line', () => {
    const expectError = async (p: Promise<unknown>, code: string, re: RegExp) => {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof EtcdRecoverError, String(e));
        assert.equal(e.code, code, e.message);
        assert.match(e.message, re);
        assert.ok(!e.message.includes('\n'), 'one line');
        return true;
      });
    };

    it('a missing bucket', async () => {
      await expectError(moto.store({ bucket: 'no-such-bucket' }).probe(), 'BUCKET_NOT_FOUND', /bucket "no-such-bucket" does not exist/);
      await expectError(moto.store({ bucket: 'no-such-bucket' }).put('x', 'y'), 'BUCKET_NOT_FOUND', /bucket "no-such-bucket" does not exist/);
    });

    it('a wrong secret key, without leaking it', async () => {
      const secret = 'wrong-secret-1234567890';
      const store = moto.store({ credentials: { accessKeyId: moto.credentials.accessKeyId, secretAccessKey: secret } });
      await assert.rejects(store.probe(), (e: EtcdRecoverError) => {
        assert.equal(e.code, 'ACCESS_DENIED', e.message);
        assert.ok(!e.message.includes(secret) && !(e.hint ?? '').includes(secret));
        return true;
      });
      await expectError(store.put('x', 'y'), 'ACCESS_DENIED', /secret key is wrong/);
      const drain = async (it: AsyncIterable<Buffer>) => {
        for await (const _ of it) void _;
      };
      await expectError(drain(store.get('x', { borrow: true })), 'ACCESS_DENIED', /secret key is wrong/);
    });

    it('an unknown access key', async () => {
      await expectError(moto.store({ credentials: { accessKeyId: 'AKIANOBODY0000000000', secretAccessKey: 'whatever1' } }).put('x', 'y'), 'ACCESS_DENIED', /access key id is unknown/);
      await expectError(moto.store({ credentials: { accessKeyId: 'AKIANOBODY0000000000', secretAccessKey: 'whatever1' } }).probe(), 'ACCESS_DENIED', /access key id is unknown|denied/);
    });
  });

  describe('server-side encryption is requested on every write', () => {
    for (const sse of [{ mode: 'SSE-S3' } as const, { mode: 'SSE-KMS', kmsKeyId: 'alias/etcd-recover' } as const]) {
      it(`${sse.mode}: single PUT and multipart upload are stored encrypted as asked`, async () => {
        const store = moto.store({ sse });
        // An independent look at the objects: the plain SDK, path-style on moto's IP address.
        const raw = new S3Client({ endpoint: moto.url, forcePathStyle: true, region: 'us-east-1', credentials: moto.credentials });
        try {
          const small = `sse/${sse.mode}-small.json`;
          const big = `sse/${sse.mode}-big.db`;
          assert.equal(await store.put(small, '{"a":1}'), true);
          const body = randomBytes(5 * 1024 * 1024 + 1);
          await store.upload(big, (async function* () {
            yield body;
          })());
          for (const key of [small, big]) {
            const h = await raw.send(new HeadObjectCommand({ Bucket: moto.bucket, Key: key }));
            assert.equal(h.ServerSideEncryption, sse.mode === 'SSE-S3' ? 'AES256' : 'aws:kms', key);
            if (sse.mode === 'SSE-KMS') assert.match(h.SSEKMSKeyId ?? '', /alias\/etcd-recover/, key);
          }
          assert.ok((await collect(store.get(big))).equals(body));
          // The control: without the option moto stores the object unencrypted, so the header above came from the store.
          assert.equal(await moto.store().put('sse/plain.json', '{}'), true);
          assert.equal((await raw.send(new HeadObjectCommand({ Bucket: moto.bucket, Key: 'sse/plain.json' }))).ServerSideEncryption, undefined);
        } finally {
          raw.destroy();
        }
      });
    }
  });
});
