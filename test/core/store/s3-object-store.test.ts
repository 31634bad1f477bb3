import { strict as assert } from 'node:assert';
import { createServer, connect, type Server } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Sandbox } from '@etcd-recover/core';
import { S3ObjectStore, readCredentialsFile, EtcdRecoverError } from '@etcd-recover/core';
import { startSandbox, stopSandbox, storeFor, tempDir } from '../../support/sandbox.js';
import { freePort } from '../../support/ports.js';
import { objectStoreContract } from './object-store.contract.js';

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
