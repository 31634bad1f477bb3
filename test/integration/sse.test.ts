import { strict as assert } from 'node:assert';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { CONTRACT_API_VERSION, CONTRACT_KIND, layout, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { json, runCli, type CliResult } from '../support/cli.js';
import { startMinioSse, type MinioSse } from '../support/minio-sse.js';
import { startSandbox, stopSandbox, tempDir, writeKeys } from '../support/sandbox.js';

const CLUSTER = 'sse-it';

/** The one `error:` line of a failed command (its `next:` hint aside), asserting there is exactly one. */
function errorLine(r: CliResult): string {
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('error:'));
  assert.equal(lines.length, 1, `one error line (exit ${r.code}):\n${r.stderr}`);
  return lines[0]!;
}

describe('server-side encryption through the CLI, on a real etcd and a MinIO with a KMS over TLS', function () {
  this.timeout(600_000);
  let sb: Sandbox;
  let mi: MinioSse;
  let raw: S3Client;
  const tmp = tempDir();
  const credentialsFile = join(tmp.path, 'credentials.json');
  const keyFile = join(tmp.path, 'sse-c.key');
  const ssecKey = randomBytes(32).toString('base64');

  before(async () => {
    [sb, mi] = await Promise.all([startSandbox({ members: 1, cluster: CLUSTER }), startMinioSse()]);
    await writeKeys(sb.endpoints(), 2_000, 'k/');
    writeFileSync(credentialsFile, JSON.stringify(mi.credentials), { mode: 0o600 });
    writeFileSync(keyFile, `${ssecKey}\n`, { mode: 0o600 });
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
    await Promise.all([stopSandbox(sb), mi?.stop()]);
    tmp.remove();
  });

  /** The plugin against the sandbox's etcd and the SSE MinIO, each mode under its own prefix. */
  const cli = (prefix: string, ...args: string[]) =>
    runCli([...args, '--endpoints', sb.endpoints().join(','), '--cluster', CLUSTER, '--bucket', mi.bucket, '--prefix', prefix, '--s3-endpoint', mi.endpoint, '--s3-ca-file', mi.caFile, '--s3-credentials-file', credentialsFile]);
  const head = (Key: string, key?: string) => raw.send(new HeadObjectCommand({ Bucket: mi.bucket, Key, ...(key ? { SSECustomerAlgorithm: 'AES256', SSECustomerKey: key } : {}) }));
  const objects = (prefix: string, name: string) => [`${prefix}/${layout.snapshotObject(CLUSTER, name)}`, `${prefix}/${layout.snapshotRecord(CLUSTER, name)}`];

  describe('--s3-sse SSE-KMS', () => {
    let backup: SnapshotRecord;
    it('backup create stores the snapshot and its record under the KMS key', async () => {
      const r = await cli('kms', 'backup', 'create', '-o', 'json', '--s3-sse', 'SSE-KMS', '--s3-sse-kms-key-id', mi.kmsKeyId);
      assert.equal(r.code, 0, r.stderr);
      backup = json<SnapshotRecord>(r);
      assert.equal(backup.verification?.ok, true);
      assert.ok(backup.totalKeys >= 2_000, `${backup.totalKeys} keys`);
      for (const key of objects('kms', backup.name)) {
        const h = await head(key);
        assert.equal(h.ServerSideEncryption, 'aws:kms', key);
        assert.match(h.SSEKMSKeyId ?? '', new RegExp(`${mi.kmsKeyId}$`), key);
      }
      assert.equal((await head(objects('kms', backup.name)[0]!)).ContentLength, backup.objectSize);
    });

    it('backup verify passes (with the flag, and without: SSE-KMS reads need no key)', async () => {
      for (const extra of [['--s3-sse', 'SSE-KMS'], []]) {
        const r = await cli('kms', 'backup', 'verify', backup.name, '-o', 'json', ...extra);
        assert.equal(r.code, 0, r.stderr);
        const v = json(r);
        assert.equal(v.ok, true);
        assert.equal(v.results[0].totalKeys, backup.totalKeys);
        assert.equal(v.results[0].integrityProven, true);
      }
    });

    it('a KMS key the store does not have fails naming it', async () => {
      const r = await cli('kms', 'backup', 'create', '--s3-sse', 'SSE-KMS', '--s3-sse-kms-key-id', 'no-such-key');
      assert.notEqual(r.code, 0);
      assert.match(errorLine(r), /SSE-KMS key "no-such-key" cannot be used/);
    });
  });

  describe('--s3-sse SSE-C --s3-sse-c-key-file', () => {
    let backup: SnapshotRecord;
    const ssec = ['--s3-sse', 'SSE-C', '--s3-sse-c-key-file', keyFile];
    it('backup create stores the snapshot and its record under the customer key, which no output repeats', async () => {
      const r = await cli('ssec', 'backup', 'create', '-o', 'json', ...ssec);
      assert.equal(r.code, 0, r.stderr);
      backup = json<SnapshotRecord>(r);
      assert.equal(backup.verification?.ok, true);
      assert.ok(!r.stdout.includes(ssecKey) && !r.stderr.includes(ssecKey), 'the key is not printed');
      for (const key of objects('ssec', backup.name)) {
        await assert.rejects(head(key), (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode === 400, `${key}: unreadable without the key`);
        const h = await head(key, ssecKey);
        assert.equal(h.SSECustomerAlgorithm, 'AES256', key);
        assert.equal(h.SSECustomerKeyMD5, createHash('md5').update(Buffer.from(ssecKey, 'base64')).digest('base64'), key);
      }
    });

    it('backup verify with the key passes, from the flag or from ETCD_RECOVER_S3_SSE_C_KEY_FILE (what the jobs get)', async () => {
      const viaFlag = await cli('ssec', 'backup', 'verify', backup.name, '-o', 'json', ...ssec);
      const viaEnv = await runCli(
        ['backup', 'verify', backup.name, '-o', 'json', '--endpoints', sb.endpoints().join(','), '--cluster', CLUSTER, '--bucket', mi.bucket, '--prefix', 'ssec', '--s3-endpoint', mi.endpoint, '--s3-ca-file', mi.caFile, '--s3-credentials-file', credentialsFile],
        { env: { ETCD_RECOVER_S3_SSE_C_KEY_FILE: keyFile } },
      );
      for (const r of [viaFlag, viaEnv]) {
        assert.equal(r.code, 0, r.stderr);
        const v = json(r);
        assert.equal(v.ok, true);
        assert.equal(v.results[0].totalKeys, backup.totalKeys);
        assert.equal(v.results[0].sha256, backup.sha256);
      }
    });

    it('backup verify without the key fails with one clear line (ENCRYPTION_KEY), not "corrupt"', async () => {
      const r = await cli('ssec', 'backup', 'verify', backup.name);
      assert.equal(r.code, 13, `exit code of ENCRYPTION_KEY:\n${r.stderr}`);
      assert.match(errorLine(r), /encrypted with a customer-provided key \(SSE-C\) and none is configured/);
      assert.match(r.stderr, /next: .*SSE-C key/);
      assert.doesNotMatch(r.stderr, /corrupt/i);
    });

    it('a key file that cannot be read, or is not a key, is a CONFIG error naming the file and never its content', async () => {
      const missing = join(tmp.path, 'no-such.key');
      const r1 = await cli('ssec', 'backup', 'verify', backup.name, '--s3-sse', 'SSE-C', '--s3-sse-c-key-file', missing);
      assert.equal(r1.code, 2, r1.stderr);
      assert.equal(errorLine(r1), `error: cannot read the SSE-C key file ${missing}: ENOENT`);
      const bad = join(tmp.path, 'bad.key');
      const content = 'this-is-not-a-key-but-it-is-secret';
      writeFileSync(bad, content);
      const r2 = await cli('ssec', 'backup', 'verify', backup.name, '--s3-sse', 'SSE-C', '--s3-sse-c-key-file', bad);
      assert.equal(r2.code, 2, r2.stderr);
      assert.match(errorLine(r2), new RegExp(`SSE-C key file ${bad}: the SSE-C key must be the base64 of exactly 32 bytes`));
      assert.ok(!r2.stderr.includes(content) && !r2.stdout.includes(content), 'the content is not repeated');
    });

    it('a recovery contract saying SSE-C: the job reads with the mounted key file, and names the Secret without one', async () => {
      // What the in-cluster verify job runs: the contract (bucket, endpoint, sse) and the key file env var.
      const contractFile = join(tmp.path, 'contract.json');
      const member = { name: 'm0', pvc: 'data-m0', peerURL: 'http://127.0.0.1:1', clientURL: sb.endpoints()[0]! };
      writeFileSync(
        contractFile,
        JSON.stringify({
          apiVersion: CONTRACT_API_VERSION,
          kind: CONTRACT_KIND,
          cluster: CLUSTER,
          namespace: 'hcp-demo',
          etcd: { statefulSet: 'etcd', members: [member] },
          backup: { bucket: mi.bucket, prefix: 'ssec', endpoint: mi.endpoint, forcePathStyle: true, sse: { mode: 'SSE-C', customerKeySecret: 'etcd-sse-key' } },
          agent: { image: 'agent', restoreServiceAccount: 'etcd-restore' },
          dependents: [],
        }),
      );
      const job = (env: NodeJS.ProcessEnv) =>
        runCli(['backup', 'verify', backup.name, '-o', 'json', '--s3-ca-file', mi.caFile, '--s3-credentials-file', credentialsFile], { env: { ETCD_RECOVER_CONTRACT: contractFile, ...env } });
      const ok = await job({ ETCD_RECOVER_S3_SSE_C_KEY_FILE: keyFile });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(json(ok).results[0].sha256, backup.sha256);
      const r = await job({});
      assert.equal(r.code, 13, r.stdout);
      const e = json(r).error;
      assert.equal(e.code, 'ENCRYPTION_KEY');
      assert.equal(e.message, 'the bucket uses SSE-C (key Secret hcp-demo/etcd-sse-key), but no SSE-C key was given');
      assert.match(e.hint, /--s3-sse-c-key-file/);
    });
  });
});
