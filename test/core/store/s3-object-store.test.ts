import { strict as assert } from 'node:assert';
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
