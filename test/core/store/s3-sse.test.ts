import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { inspect } from 'node:util';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { EtcdRecoverError, S3ObjectStore, type S3Config } from '@etcd-recover/core';
import { startMinioSse, type MinioSse } from '../../support/minio-sse.js';
import { Pki } from '../../support/kube/pki.js';
import { tempDir } from '../../support/sandbox.js';
import { objectStoreContract } from './object-store.contract.js';

const newKey = () => randomBytes(32).toString('base64');
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
async function* once(b: Buffer) {
  yield b;
}
const drain = async (it: AsyncIterable<Buffer>) => {
  for await (const _ of it) void _;
};

describe('S3 server-side encryption (sse option)', function () {
  describe('configuration', () => {
    const isConfigError = (re: RegExp, secret?: string) => (e: unknown) => {
      assert.ok(e instanceof EtcdRecoverError, String(e));
      assert.equal(e.code, 'CONFIG');
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'), 'one line');
      if (secret) assert.ok(!e.message.includes(secret) && !(e.hint ?? '').includes(secret), 'the key is not repeated');
      return true;
    };

    it('SSE-C over plain HTTP is refused, with the reason', () => {
      const key = newKey();
      assert.throws(() => new S3ObjectStore({ bucket: 'ok-bucket', endpoint: 'http://127.0.0.1:9000', sse: { mode: 'SSE-C', key } }), (e: unknown) => {
        isConfigError(/S3 refuses SSE-C keys over plain HTTP; use an https endpoint/, key)(e);
        assert.equal((e as Error).message, 'S3 refuses SSE-C keys over plain HTTP; use an https endpoint');
        return true;
      });
      // AWS itself (no endpoint) and https endpoints are fine; SSE-S3 / SSE-KMS are fine over http.
      new S3ObjectStore({ bucket: 'ok-bucket', sse: { mode: 'SSE-C', key } });
      new S3ObjectStore({ bucket: 'ok-bucket', endpoint: 'https://s3.example.test', sse: { mode: 'SSE-C', key } });
      new S3ObjectStore({ bucket: 'ok-bucket', endpoint: 'http://127.0.0.1:9000', sse: { mode: 'SSE-S3' } });
      new S3ObjectStore({ bucket: 'ok-bucket', endpoint: 'http://127.0.0.1:9000', sse: { mode: 'SSE-KMS', kmsKeyId: 'alias/x' } });
    });

    it('an SSE-C key that is not the base64 of 32 bytes is refused without quoting it', () => {
      for (const key of [randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), randomBytes(32).toString('base64url'), 'not a key at all, but 44 characters long!!!', '']) {
        assert.throws(() => new S3ObjectStore({ bucket: 'ok-bucket', sse: { mode: 'SSE-C', key } }), isConfigError(/SSE-C key must be the base64 of exactly 32 bytes/, key || undefined));
      }
    });

    it('an unknown mode or an empty KMS key id is refused', () => {
      assert.throws(() => new S3ObjectStore({ bucket: 'ok-bucket', sse: { mode: 'SSE-X' } as unknown as S3Config['sse'] }), isConfigError(/mode "SSE-X" is not one of SSE-S3, SSE-KMS, SSE-C/));
      assert.throws(() => new S3ObjectStore({ bucket: 'ok-bucket', sse: { mode: 'SSE-KMS', kmsKeyId: ' ' } }), isConfigError(/SSE-KMS key id is empty/));
    });

    it('the SSE-C key is in neither the description nor a dump or inspection of the store', () => {
      const key = newKey();
      const store = new S3ObjectStore({ bucket: 'ok-bucket', endpoint: 'https://s3.example.test', sse: { mode: 'SSE-C', key } });
      assert.ok(!store.description.includes(key));
      assert.ok(!JSON.stringify(store).includes(key), 'JSON');
      assert.ok(!inspect(store, { depth: 10, showHidden: true }).includes(key), 'inspect');
    });
  });

  describe('against a MinIO with a KMS, over TLS', () => {
    let mi: MinioSse;
    let raw: S3Client;
    before(async () => {
      mi = await startMinioSse();
      raw = new S3Client({
        endpoint: mi.endpoint,
        forcePathStyle: true,
        region: 'us-east-1',
        credentials: mi.credentials,
        requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ ca: readFileSync(mi.caFile) }) }),
      });
    });
    after(async () => {
      raw?.destroy();
      await mi?.stop();
    });
    const head = (Key: string, ssecKey?: string) =>
      raw.send(new HeadObjectCommand({ Bucket: mi.bucket, Key, ...(ssecKey ? { SSECustomerAlgorithm: 'AES256', SSECustomerKey: ssecKey } : {}) }));

    const ssecKey = newKey();
    objectStoreContract('S3 (MinIO over TLS), SSE-S3', async () => ({ store: mi.store({ sse: { mode: 'SSE-S3' }, listPageSize: 9 }), pageSize: 9 }));
    objectStoreContract('S3 (MinIO over TLS), SSE-KMS', async () => ({ store: mi.store({ sse: { mode: 'SSE-KMS', kmsKeyId: mi.kmsKeyId }, listPageSize: 9 }), pageSize: 9 }));
    objectStoreContract('S3 (MinIO over TLS), SSE-C, checksums when_required', async () => ({ store: mi.store({ sse: { mode: 'SSE-C', key: ssecKey }, checksumMode: 'when_required', listPageSize: 9 }), pageSize: 9 }));
    objectStoreContract('S3 (MinIO over TLS), SSE-C', async () => ({ store: mi.store({ sse: { mode: 'SSE-C', key: ssecKey }, listPageSize: 9 }), pageSize: 9 }));

    for (const sse of [{ mode: 'SSE-S3' }, { mode: 'SSE-KMS' }, { mode: 'SSE-KMS', kmsKeyId: 'etcd-recover-test-key' }] as const) {
      it(`${JSON.stringify(sse)}: HeadObject reports the encryption of a PUT and of a multipart upload`, async () => {
        const store = mi.store({ sse });
        const tag = randomBytes(3).toString('hex');
        assert.equal(await store.put(`enc/${tag}.json`, '{"a":1}'), true);
        const body = randomBytes(5 * 1024 * 1024 + 9);
        await store.upload(`enc/${tag}.db`, once(body));
        for (const key of [`enc/${tag}.json`, `enc/${tag}.db`]) {
          const h = await head(key);
          assert.equal(h.ServerSideEncryption, sse.mode === 'SSE-S3' ? 'AES256' : 'aws:kms', key);
          if (sse.mode === 'SSE-KMS') assert.match(h.SSEKMSKeyId ?? '', new RegExp(`${mi.kmsKeyId}$`), key);
        }
        const back = createHash('sha256');
        for await (const c of store.get(`enc/${tag}.db`, { borrow: true })) back.update(c);
        assert.equal(back.digest('hex'), sha(body));
      });
    }

    it('the control: without the option the same MinIO stores objects unencrypted', async () => {
      assert.equal(await mi.store().put('enc/plain.json', '{}'), true);
      assert.equal((await head('enc/plain.json')).ServerSideEncryption, undefined);
    });

    it('an SSE-KMS key the KMS does not have is named, not taken for a missing object', async () => {
      await assert.rejects(mi.store({ sse: { mode: 'SSE-KMS', kmsKeyId: 'no-such-key' } }).put('enc/x.json', '{}'), (e: EtcdRecoverError) => {
        assert.equal(e.code, 'CONFIG', e.message);
        assert.match(e.message, /SSE-KMS key "no-such-key" cannot be used/);
        assert.ok(!e.message.includes('\n'));
        return true;
      });
    });

    describe('SSE-C', () => {
      const tag = randomBytes(3).toString('hex');
      const big = `ssec/${tag}.db`;
      const small = `ssec/${tag}.json`;
      const body = randomBytes(11 * 1024 * 1024 + 5);
      before(async () => {
        const store = mi.store({ sse: { mode: 'SSE-C', key: ssecKey } });
        await store.upload(big, (async function* () {
          for (let i = 0; i < body.length; i += 1 << 20) yield body.subarray(i, i + (1 << 20));
        })());
        assert.equal(await store.put(small, '{"v":1}'), true);
      });

      it('the objects are stored under the key: HEAD without it fails, with it reports SSE-C', async () => {
        await assert.rejects(head(big), (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode === 400);
        const h = await head(big, ssecKey);
        assert.equal(h.SSECustomerAlgorithm, 'AES256');
        assert.equal(h.SSECustomerKeyMD5, createHash('md5').update(Buffer.from(ssecKey, 'base64')).digest('base64'));
        assert.equal(h.ContentLength, body.length);
      });

      it('with the key: the bytes come back (SDK, direct GET, read, head)', async () => {
        const store = mi.store({ sse: { mode: 'SSE-C', key: ssecKey } });
        const sdk = createHash('sha256');
        for await (const c of store.get(big)) sdk.update(c);
        assert.equal(sdk.digest('hex'), sha(body));
        const direct = createHash('sha256');
        const memory = new Set<ArrayBufferLike>();
        for await (const c of store.get(big, { borrow: true })) {
          direct.update(c);
          memory.add(c.buffer);
        }
        assert.equal(direct.digest('hex'), sha(body));
        assert.ok(memory.size <= 4, `through the direct GET (${memory.size} buffers)`);
        assert.equal((await store.read(small))!.body.toString(), '{"v":1}');
        assert.equal((await store.head(big))!.size, body.length);
      });

      it('without the key: every read fails with one clear line (ENCRYPTION_KEY)', async () => {
        const store = mi.store();
        const check = (re: RegExp) => (e: unknown) => {
          assert.ok(e instanceof EtcdRecoverError, String(e));
          assert.equal(e.code, 'ENCRYPTION_KEY', e.message);
          assert.match(e.message, re);
          assert.ok(!e.message.includes('\n'));
          assert.match(e.hint ?? '', /SSE-C key/);
          return true;
        };
        const re = /encrypted with a customer-provided key \(SSE-C\) and none is configured/;
        await assert.rejects(store.read(small), check(re));
        await assert.rejects(store.head(big), check(re));
        await assert.rejects(drain(store.get(big)), check(re));
        await assert.rejects(drain(store.get(big, { borrow: true })), check(re));
      });

      it('with another key: refused, the message says the key may be why, and quotes neither key', async () => {
        const other = newKey();
        const store = mi.store({ sse: { mode: 'SSE-C', key: other } });
        const check = (e: unknown) => {
          assert.ok(e instanceof EtcdRecoverError, String(e));
          assert.equal(e.code, 'ACCESS_DENIED', e.message);
          assert.match(e.message, /the SSE-C key is not the one the object was written with/);
          for (const k of [other, ssecKey]) assert.ok(!e.message.includes(k) && !(e.hint ?? '').includes(k), 'no key in the error');
          assert.ok(!inspect(e).includes(other), 'nor in its inspection');
          return true;
        };
        await assert.rejects(store.read(small), check);
        await assert.rejects(store.head(big), check);
        await assert.rejects(drain(store.get(big)), check);
        await assert.rejects(drain(store.get(big, { borrow: true })), check);
      });

      it('a plain object read with the key configured is named as such', async () => {
        assert.equal(await mi.store().put(`ssec/${tag}-plain.json`, '{}'), true);
        await assert.rejects(mi.store({ sse: { mode: 'SSE-C', key: ssecKey } }).read(`ssec/${tag}-plain.json`), (e: EtcdRecoverError) => {
          assert.equal(e.code, 'ENCRYPTION_KEY', e.message);
          assert.match(e.message, /not encrypted with a customer-provided key \(SSE-C\), but one is configured/);
          return true;
        });
      });

      describe('a connection cut mid-body resumes with a ranged GET that carries the key', () => {
        // A TLS proxy (its own CA) in front of the TLS MinIO that cuts the first `cuts` connections
        // carrying a GET of the object after `cutAfter` response bytes.
        const dir = tempDir();
        let server: TlsServer;
        let endpoint: string;
        let ca: string;
        let cuts = 0;
        const ranges: string[] = [];
        before(async () => {
          const pki = await Pki.create(dir.path);
          const leaf = await pki.issue('proxy', { cn: '127.0.0.1', ips: ['127.0.0.1'], usage: 'server' });
          ca = pki.ca.cert;
          const target = new URL(mi.endpoint);
          const upstreamCa = readFileSync(mi.caFile);
          server = createTlsServer({ key: readFileSync(leaf.key), cert: readFileSync(leaf.cert) }, (c) => {
            const up = tlsConnect({ host: target.hostname, port: Number(target.port), ca: upstreamCa });
            let cutThis = false;
            let sent = 0;
            c.on('data', (chunk: Buffer) => {
              const text = chunk.toString('latin1');
              if (text.startsWith(`GET /${mi.bucket}/${big}`)) {
                const range = /\r\nrange: *([^\r]*)/i.exec(text)?.[1];
                ranges.push(`${range ?? '-'} ssec=${/x-amz-server-side-encryption-customer-key:/i.test(text)}`);
                if (cuts > 0) {
                  cuts--;
                  cutThis = true;
                }
              }
              up.write(chunk);
            });
            up.on('data', (chunk: Buffer) => {
              if (cutThis && (sent += chunk.length) > 3 * 1024 * 1024) {
                c.destroy();
                up.destroy();
                return;
              }
              c.write(chunk);
            });
            c.on('error', () => up.destroy());
            up.on('error', () => c.destroy());
            c.on('end', () => up.end());
            up.on('end', () => c.end());
          });
          await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
          endpoint = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
        });
        after(() => {
          server.close();
          dir.remove();
        });

        for (const borrow of [true, false]) {
          it(borrow ? 'direct GET' : 'SDK GET', async () => {
            cuts = 2;
            ranges.length = 0;
            const store = mi.store({ endpoint, caFile: ca, sse: { mode: 'SSE-C', key: ssecKey } });
            const retries: number[] = [];
            const h = createHash('sha256');
            let n = 0;
            for await (const c of store.get(big, { borrow, onRetry: (r) => retries.push(r.offset) })) {
              h.update(c);
              n += c.length;
            }
            assert.equal(cuts, 0, 'both cuts were made');
            assert.equal(retries.length, 2, `resumed twice (${retries.join(', ')})`);
            assert.ok(retries[0]! > 0 && retries[1]! > retries[0]!, `each resume starts further on: ${retries.join(', ')}`);
            assert.deepEqual(ranges.map((r) => r.split(' ')[0]), ['-', `bytes=${retries[0]}-`, `bytes=${retries[1]}-`], 'the first GET is whole, each resume a range from its offset');
            assert.ok(ranges.slice(1).every((r) => r.endsWith('ssec=true')), `every ranged GET carried the SSE-C key: ${ranges.join('; ')}`);
            assert.equal(n, body.length);
            assert.equal(h.digest('hex'), sha(body));
          });
        }
      });
    });
  });
});
