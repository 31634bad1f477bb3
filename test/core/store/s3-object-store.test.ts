import { strict as assert } from 'node:assert';
import { createServer, connect, type Server } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Sandbox } from '@etcd-recover/core';
import { S3ObjectStore, readCredentialsFile, EtcdRecoverError } from '@etcd-recover/core';
import { startSandbox, stopSandbox, storeFor, tempDir } from '../../support/sandbox.js';
import { freePort } from '../../support/ports.js';
import { objectStoreContract } from './object-store.contract.js';
import { startFlakyS3Proxy } from '../../support/flaky-proxy.js';
import { Pki } from '../../support/kube/pki.js';

describe('S3 object store on a real MinIO', function () {
  let sb: Sandbox;
  before(async () => {
    sb = await startSandbox({ members: 1 });
  });
  after(async () => stopSandbox(sb));

  // Both SDK checksum modes against the same real server.
  objectStoreContract('S3 (MinIO), checksums when_supported', async () => ({ store: storeFor(sb, { checksumMode: 'when_supported' }), pageSize: 1000 }));
  objectStoreContract('S3 (MinIO), checksums when_required, small pages', async () => ({ store: storeFor(sb, { checksumMode: 'when_required', listPageSize: 9 }), pageSize: 9 }));

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
      await expectError(storeFor(sb, { bucket: 'no-such-bucket' }).probe(), 'BUCKET_NOT_FOUND', /bucket "no-such-bucket" does not exist/);
    });

    it('a wrong secret key, without leaking it', async () => {
      const secret = 'wrong-secret-1234567890';
      const store = storeFor(sb, { credentials: { accessKeyId: sb.state.minio.accessKey, secretAccessKey: secret } });
      await assert.rejects(store.probe(), (e: EtcdRecoverError) => {
        assert.equal(e.code, 'ACCESS_DENIED');
        assert.ok(!e.message.includes(secret) && !(e.hint ?? '').includes(secret));
        return true;
      });
      await expectError(store.put('x', 'y'), 'ACCESS_DENIED', /secret key is wrong|access was denied/);
    });

    it('an unknown access key', async () => {
      await expectError(storeFor(sb, { credentials: { accessKeyId: 'nobody', secretAccessKey: 'whatever1' } }).put('x', 'y'), 'ACCESS_DENIED', /access key id is unknown|denied/);
    });

    it('an unreachable endpoint, after bounded retries', async () => {
      const port = await freePort();
      const store = new S3ObjectStore({ ...sb.s3Config(), endpoint: `http://127.0.0.1:${port}`, maxAttempts: 2 });
      await expectError(store.probe(), 'STORE_UNREACHABLE', /unreachable/);
    });

    it('an invalid bucket name or endpoint is a configuration error before any request', () => {
      assert.throws(() => new S3ObjectStore({ bucket: 'Bad_Bucket' }), /bucket name "Bad_Bucket" must be/);
      assert.throws(() => new S3ObjectStore({ bucket: 'ok-bucket', endpoint: 'ftp://x' }), /not an http\(s\) URL/);
    });
  });

  // Parts that carry a CRC-32C go with an unsigned payload (no SHA-256 pass on either side); parts
  // without one keep the signed payload hash. Either way a byte changed on the wire must be refused.
  describe('a byte corrupted in transit is refused, never stored', () => {
    /** A TCP proxy to MinIO that flips one byte ~3 MiB into the first connection carrying that much. */
    async function corruptingProxy(target: URL): Promise<{ server: Server; url: string; flipped: () => boolean }> {
      let flipped = false;
      const server = createServer((client) => {
        const upstream = connect(Number(target.port), target.hostname);
        let seen = 0;
        client.on('data', (chunk: Buffer) => {
          const at = 3 * 1024 * 1024 - seen;
          if (!flipped && at >= 0 && at < chunk.length) {
            chunk[at] = chunk[at]! ^ 0xff;
            flipped = true;
          }
          seen += chunk.length;
          upstream.write(chunk);
        });
        upstream.pipe(client);
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
        client.on('end', () => upstream.end());
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as { port: number }).port;
      return { server, url: `http://127.0.0.1:${port}`, flipped: () => flipped };
    }

    for (const checksumMode of ['when_supported', 'when_required'] as const) {
      it(`checksums ${checksumMode}: the upload fails and leaves no object`, async () => {
        const proxy = await corruptingProxy(new URL(sb.s3Config().endpoint!));
        try {
          const store = storeFor(sb, { checksumMode, endpoint: proxy.url, maxAttempts: 1 });
          const data = Buffer.alloc(7 * 1024 * 1024);
          for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
          async function* body() {
            for (let i = 0; i < data.length; i += 64 * 1024) yield data.subarray(i, i + 64 * 1024);
          }
          await assert.rejects(store.upload(`corrupt/${checksumMode}`, body()), (e: unknown) => {
            assert.ok(e instanceof EtcdRecoverError, String(e));
            // Which check caught it: the part's CRC-32C (unsigned payload) or the signed payload hash.
            assert.match(e.message, checksumMode === 'when_supported' ? /ChecksumMismatch|BadDigest/ : /SHA256Mismatch/);
            return true;
          });
          assert.ok(proxy.flipped(), 'the proxy changed a byte of the part');
          assert.equal(await storeFor(sb).head(`corrupt/${checksumMode}`), undefined, 'nothing was stored');
        } finally {
          proxy.server.close();
        }
      });
    }
  });

  describe('borrowed reads come straight off the socket (direct GET)', () => {
    const key = `direct-${randomBytes(3).toString('hex')}.db`;
    const body = randomBytes(13 * 1024 * 1024 + 77);
    const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    before(async () => {
      const store = storeFor(sb);
      await store.upload(key, (async function* () {
        for (let i = 0; i < body.length; i += 1 << 20) yield body.subarray(i, i + (1 << 20));
      })());
    });

    it('gives the same bytes as the SDK read, from a pool of at most four buffers', async () => {
      const store = storeFor(sb);
      const h = createHash('sha256');
      const memory = new Set<ArrayBufferLike>();
      let chunks = 0;
      for await (const c of store.get(key, { borrow: true })) {
        h.update(c);
        memory.add(c.buffer);
        chunks++;
      }
      assert.equal(h.digest('hex'), sha(body));
      assert.ok(chunks >= 13, `${chunks} chunks`);
      assert.ok(memory.size <= 4, `${chunks} chunks in ${memory.size} distinct buffers: the memory is reused, not allocated per read`);
      const sdk = createHash('sha256');
      for await (const c of store.get(key)) sdk.update(c);
      assert.equal(sdk.digest('hex'), sha(body));
    });

    it('an error answer gets the same typed error as through the SDK (missing key, wrong secret)', async () => {
      const drain = async (it: AsyncIterable<Buffer>) => {
        for await (const _ of it) void _;
      };
      await assert.rejects(drain(storeFor(sb).get('no-such.db', { borrow: true })), (e: EtcdRecoverError) => e.code === 'SNAPSHOT_NOT_FOUND');
      const wrong = storeFor(sb, { credentials: { accessKeyId: sb.state.minio.accessKey, secretAccessKey: 'wrong-secret-1234567890' } });
      await assert.rejects(drain(wrong.get(key, { borrow: true })), (e: EtcdRecoverError) => e.code === 'ACCESS_DENIED' && !e.message.includes('wrong-secret'));
    });

    it('a connection cut mid-body resumes from its offset, and the bytes are intact', async () => {
      const proxy = await startFlakyS3Proxy(sb.s3Config().endpoint!, { cutGetsOfSuffix: key, cutAfterBytes: 3 * 1024 * 1024 + 5, cuts: 2 });
      try {
        const store = storeFor(sb, { endpoint: proxy.url });
        const retries: number[] = [];
        const h = createHash('sha256');
        let n = 0;
        for await (const c of store.get(key, { borrow: true, onRetry: (r) => retries.push(r.offset) })) {
          h.update(c);
          n += c.length;
        }
        assert.equal(proxy.cutsMade(), 2);
        assert.equal(retries.length, 2, `resumed twice (${retries.join(', ')})`);
        assert.ok(retries[0]! > 0 && retries[1]! > retries[0]!, `each resume starts further on: ${retries.join(', ')}`);
        assert.equal(n, body.length);
        assert.equal(h.digest('hex'), sha(body));
      } finally {
        await proxy.close();
      }
    });

    it('an abort stops the download', async () => {
      const ac = new AbortController();
      let n = 0;
      await assert.rejects(
        (async () => {
          for await (const c of storeFor(sb).get(key, { borrow: true, signal: ac.signal })) {
            n += c.length;
            if (n > 2 * 1024 * 1024) ac.abort();
          }
        })(),
        (e: EtcdRecoverError) => e.code === 'ABORTED',
      );
      assert.ok(n < body.length);
    });
  });

  describe('over TLS with the endpoint CA (--s3-ca-file)', () => {
    // A TLS-terminating TCP proxy in front of MinIO, with a certificate from a throwaway CA.
    const dir = tempDir();
    let server: TlsServer;
    let endpoint: string;
    let ca: string;
    before(async () => {
      const pki = await Pki.create(dir.path);
      const leaf = await pki.issue('s3', { cn: '127.0.0.1', ips: ['127.0.0.1'], usage: 'server' });
      ca = pki.ca.cert;
      const target = new URL(sb.s3Config().endpoint!);
      server = createTlsServer({ key: readFileSync(leaf.key), cert: readFileSync(leaf.cert) }, (c) => {
        const up = connect(Number(target.port), target.hostname);
        c.pipe(up).pipe(c);
        c.on('error', () => up.destroy());
        up.on('error', () => c.destroy());
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      endpoint = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
    });
    after(() => {
      server.close();
      dir.remove();
    });

    it('uploads, and reads back through the direct GET over TLS; without the CA the TLS failure is named', async () => {
      const store = storeFor(sb, { endpoint, caFile: ca });
      const body = randomBytes(6 * 1024 * 1024 + 3);
      await store.upload('tls/obj.db', (async function* () {
        yield body;
      })());
      const h = createHash('sha256');
      const memory = new Set<ArrayBufferLike>();
      for await (const c of store.get('tls/obj.db', { borrow: true })) {
        h.update(c);
        memory.add(c.buffer);
      }
      assert.equal(h.digest('hex'), createHash('sha256').update(body).digest('hex'));
      assert.ok(memory.size <= 4, `read through the direct GET (${memory.size} buffers)`);
      await assert.rejects(storeFor(sb, { endpoint, maxAttempts: 1 }).probe(), (e: EtcdRecoverError) => {
        assert.equal(e.code, 'STORE_UNREACHABLE', e.message);
        assert.match(`${e.message} ${e.hint}`, /TLS|certificate|--s3-ca-file/);
        return true;
      });
    });
  });

  describe('credentials from a file', () => {
    const dir = tempDir();
    after(() => dir.remove());
    it('reads AWS INI profiles, KEY=VALUE lines and JSON, and the store works with them', async () => {
      const { accessKey, secretKey } = sb.state.minio;
      const ini = join(dir.path, 'credentials');
      writeFileSync(ini, `[default]\naws_access_key_id = nope\naws_secret_access_key = nope\n\n[backup]\naws_access_key_id = ${accessKey}\naws_secret_access_key = ${secretKey}\n`);
      assert.deepEqual(readCredentialsFile(ini, 'backup'), { accessKeyId: accessKey, secretAccessKey: secretKey });
      const env = join(dir.path, 'env');
      writeFileSync(env, `AWS_ACCESS_KEY_ID=${accessKey}\nexport AWS_SECRET_ACCESS_KEY="${secretKey}"\n`);
      assert.deepEqual(readCredentialsFile(env), { accessKeyId: accessKey, secretAccessKey: secretKey });
      const json = join(dir.path, 'c.json');
      writeFileSync(json, JSON.stringify({ accessKeyId: accessKey, secretAccessKey: secretKey }));
      assert.deepEqual(readCredentialsFile(json), { accessKeyId: accessKey, secretAccessKey: secretKey });
      const { credentials: _drop, ...rest } = sb.s3Config();
      await new S3ObjectStore({ ...rest, credentialsFile: ini, profile: 'backup' }).probe();
      assert.throws(() => readCredentialsFile(ini, 'missing'), /no profile "missing"/);
    });
  });
});
