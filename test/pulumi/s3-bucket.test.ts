import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { Module } from 'node:module';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketVersioningCommand,
  GetObjectLockConfigurationCommand,
  GetObjectRetentionCommand,
  HeadBucketCommand,
  ListObjectVersionsCommand,
  PutBucketLifecycleConfigurationCommand,
  PutObjectCommand,
  DeleteObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import * as pulumi from '@pulumi/pulumi';
import type { Sandbox } from '@etcd-recover/core';
import { startSandbox, stopSandbox } from '../support/sandbox.js';
import { setupMocks, outputValue } from '../support/pulumi-mocks.js';
import {
  s3BucketProvider as provider,
  LIFECYCLE_RULE_ID,
  type S3BucketInputs,
  type S3BucketOutputs,
} from '../../packages/pulumi/src/bucket/index.js';

const UNKNOWN = '04da6b54-80e4-46f7-96ec-b56ff0331ba9';

describe('S3Bucket dynamic provider on a real MinIO', function () {
  let sb: Sandbox;
  let raw: S3Client;
  let base: Omit<S3BucketInputs, 'bucket'>;
  const made = new Set<string>();

  const unique = (tag: string) => `etcdr-${tag}-${randomBytes(4).toString('hex')}`;
  const inputs = (over: Partial<S3BucketInputs> = {}): S3BucketInputs => {
    const i: S3BucketInputs = { ...base, bucket: unique('b'), ...over };
    made.add(i.bucket);
    return i;
  };
  const exists = async (bucket: string) => {
    try {
      await raw.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (e) {
      if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
      throw e;
    }
  };
  const lifecycle = async (bucket: string) => {
    try {
      return (await raw.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }))).Rules ?? [];
    } catch (e) {
      if ((e as Error).name === 'NoSuchLifecycleConfiguration') return [];
      throw e;
    }
  };
  const put = (bucket: string, key: string, body = 'x') => raw.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  /** Asserts a one-line message naming the bucket and free of the secret. */
  const clearError = (re: RegExp, bucket: string, secret = base.secretAccessKey) => (e: unknown) => {
    assert.ok(e instanceof Error, String(e));
    assert.match(e.message, re);
    assert.ok(e.message.includes(`"${bucket}"`), `names the bucket: ${e.message}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    assert.ok(!e.message.includes(secret), `no secret in: ${e.message}`);
    return true;
  };

  before(async () => {
    sb = await startSandbox({ members: 1 });
    const cfg = sb.s3Config();
    base = {
      endpoint: cfg.endpoint!,
      region: 'us-east-1',
      accessKeyId: cfg.credentials!.accessKeyId,
      secretAccessKey: cfg.credentials!.secretAccessKey,
    };
    raw = new S3Client({ endpoint: cfg.endpoint!, region: 'us-east-1', forcePathStyle: true, credentials: cfg.credentials! });
  });
  afterEach(async () => {
    // Leave nothing behind, whatever the test did.
    for (const bucket of made) {
      if (await exists(bucket)) await provider.delete!(bucket, { ...(await fullOuts(bucket)), forceDestroy: true });
    }
    made.clear();
  });
  after(async () => {
    raw?.destroy();
    await stopSandbox(sb);
  });
  const fullOuts = async (bucket: string): Promise<S3BucketOutputs> => {
    const lock = await raw.send(new GetObjectLockConfigurationCommand({ Bucket: bucket })).catch(() => undefined);
    const r = lock?.ObjectLockConfiguration?.Rule?.DefaultRetention;
    return {
      ...base,
      bucket,
      region: 'us-east-1',
      forcePathStyle: true,
      checksumMode: 'when_supported',
      versioning: true,
      forceDestroy: true,
      ...(r?.Mode ? { objectLock: { mode: r.Mode, days: r.Days ?? 1 } } : {}),
    } as S3BucketOutputs;
  };

  it('create makes the bucket with versioning and the expiration rule; read returns the same outputs', async () => {
    const i = inputs({ expirationDays: 7, expirationPrefix: 'snapshots/' });
    const res = await provider.create(i);
    assert.equal(res.id, i.bucket);
    assert.ok(await exists(i.bucket), 'HeadBucket finds the bucket');
    assert.equal((await raw.send(new GetBucketVersioningCommand({ Bucket: i.bucket }))).Status, 'Enabled');
    const rules = await lifecycle(i.bucket);
    const rule = rules.find((r) => r.ID === LIFECYCLE_RULE_ID);
    assert.ok(rule, JSON.stringify(rules));
    assert.equal(rule.Status, 'Enabled');
    assert.equal(rule.Expiration?.Days, 7);
    assert.equal(rule.Filter?.Prefix ?? rule.Prefix, 'snapshots/');
    assert.equal(rule.NoncurrentVersionExpiration?.NoncurrentDays, 7, 'noncurrent versions expire too');

    const outs = res.outs!;
    assert.deepEqual(outs, {
      ...base,
      bucket: i.bucket,
      forcePathStyle: true,
      checksumMode: 'when_supported',
      versioning: true,
      expirationDays: 7,
      expirationPrefix: 'snapshots/',
      forceDestroy: false,
    });
    const read = await provider.read!(res.id, outs);
    assert.equal(read.id, i.bucket);
    assert.deepEqual(read.props, outs);
  });

  it('diff: expiration and credentials update in place; name, endpoint, region and objectLock replace', async () => {
    const i = inputs({ expirationDays: 7 });
    const { id, outs } = await provider.create(i);
    const o = outs!;

    assert.deepEqual(await provider.diff!(id, o, { ...i }), { changes: false, replaces: [], deleteBeforeReplace: false });
    assert.deepEqual(await provider.diff!(id, o, { ...i, expirationDays: 30 }), { changes: true, replaces: [], deleteBeforeReplace: false });
    assert.deepEqual(await provider.diff!(id, o, { ...i, versioning: false }), { changes: true, replaces: [], deleteBeforeReplace: false });
    assert.deepEqual(await provider.diff!(id, o, { ...i, secretAccessKey: 'rotated-secret', accessKeyId: 'rotated' }), {
      changes: true,
      replaces: [],
      deleteBeforeReplace: false,
    });
    assert.deepEqual(await provider.diff!(id, o, { ...i, forceDestroy: true }), { changes: true, replaces: [], deleteBeforeReplace: false });
    // Defaults written out explicitly are no change.
    assert.equal((await provider.diff!(id, o, { ...i, versioning: true, region: 'us-east-1', forcePathStyle: true })).changes, false);

    assert.deepEqual(await provider.diff!(id, o, { ...i, bucket: 'another-name' }), { changes: true, replaces: ['bucket'], deleteBeforeReplace: false });
    assert.deepEqual(await provider.diff!(id, o, { ...i, bucket: UNKNOWN }), { changes: true, replaces: ['bucket'], deleteBeforeReplace: false });
    assert.deepEqual(await provider.diff!(id, o, { ...i, objectLock: { mode: 'GOVERNANCE', days: 1 } }), {
      changes: true,
      replaces: ['objectLock'],
      deleteBeforeReplace: true,
    });
    assert.deepEqual(await provider.diff!(id, o, { ...i, region: 'eu-west-1' }), { changes: true, replaces: ['region'], deleteBeforeReplace: true });
    assert.deepEqual(await provider.diff!(id, o, { ...i, endpoint: 'http://127.0.0.1:1' }), {
      changes: true,
      replaces: ['endpoint'],
      deleteBeforeReplace: true,
    });
  });

  it('update changes the lifecycle and versioning for real, keeping rules it does not own', async () => {
    const i = inputs({ expirationDays: 7, expirationPrefix: 'a/' });
    const { id, outs } = await provider.create(i);
    // A rule somebody else manages on the same bucket.
    const foreign = { ID: 'someone-else', Status: 'Enabled' as const, Filter: { Prefix: 'tmp/' }, Expiration: { Days: 2 } };
    await raw.send(
      new PutBucketLifecycleConfigurationCommand({ Bucket: i.bucket, LifecycleConfiguration: { Rules: [...(await lifecycle(i.bucket)), foreign] } }),
    );

    const u1 = await provider.update!(id, outs!, { ...i, expirationDays: 30, expirationPrefix: 'b/' });
    assert.equal(u1.outs!.expirationDays, 30);
    let rules = await lifecycle(i.bucket);
    const ours = rules.find((r) => r.ID === LIFECYCLE_RULE_ID);
    assert.equal(ours?.Expiration?.Days, 30);
    assert.equal(ours?.Filter?.Prefix ?? ours?.Prefix, 'b/');
    assert.ok(rules.some((r) => r.ID === 'someone-else'), 'the foreign rule is kept');
    assert.deepEqual((await provider.read!(id, u1.outs!)).props, u1.outs);

    // Versioning off: suspended, and the rule loses its noncurrent-version part.
    const u2 = await provider.update!(id, u1.outs!, { ...i, expirationDays: 30, expirationPrefix: 'b/', versioning: false });
    assert.equal((await raw.send(new GetBucketVersioningCommand({ Bucket: i.bucket }))).Status, 'Suspended');
    rules = await lifecycle(i.bucket);
    assert.equal(rules.find((r) => r.ID === LIFECYCLE_RULE_ID)?.NoncurrentVersionExpiration, undefined);

    // No expiration: our rule is gone, the foreign one stays.
    const { expirationDays: _days, expirationPrefix: _prefix, ...noExpiration } = i;
    const u3 = await provider.update!(id, u2.outs!, { ...noExpiration, versioning: false });
    rules = await lifecycle(i.bucket);
    assert.deepEqual(
      rules.map((r) => r.ID),
      ['someone-else'],
    );
    const read = await provider.read!(id, u3.outs!);
    assert.equal(read.props!.expirationDays, undefined);
    assert.equal(read.props!.versioning, false);
  });

  it('delete removes an empty bucket; a bucket already gone is not an error', async () => {
    const i = inputs();
    const { id, outs } = await provider.create(i);
    await provider.delete!(id, outs!);
    assert.equal(await exists(i.bucket), false);
    await provider.delete!(id, outs!);
    // read of a bucket that is gone returns no id (Pulumi then plans a create)
    assert.deepEqual(await provider.read!(id, outs!), {});
  });

  it('delete of a non-empty bucket fails clearly without forceDestroy; with it every version and delete marker goes', async function () {
    this.timeout(180_000);
    const i = inputs();
    const { id, outs } = await provider.create(i);
    // More than one page (1000) of versions, overwritten versions and a delete marker.
    const keys = Array.from({ length: 1010 }, (_, n) => `snapshots/${String(n).padStart(5, '0')}.db`);
    for (let n = 0; n < keys.length; n += 50) await Promise.all(keys.slice(n, n + 50).map((k) => put(i.bucket, k)));
    await put(i.bucket, keys[0]!, 'v2');
    await raw.send(new DeleteObjectCommand({ Bucket: i.bucket, Key: keys[1]! }));

    await assert.rejects(
      provider.delete!(id, outs!),
      clearError(/^S3Bucket delete of bucket "[^"]+" at http:\/\/[^:]+:\d+: the bucket "[^"]+" is not empty; set forceDestroy or empty it \(BucketNotEmpty\)$/, i.bucket),
    );
    assert.ok(await exists(i.bucket), 'the bucket is still there');

    await provider.delete!(id, { ...outs!, forceDestroy: true });
    assert.equal(await exists(i.bucket), false);
  });

  it('objectLock {GOVERNANCE, 1} is set at creation; forceDestroy bypasses governance retention', async () => {
    const i = inputs({ objectLock: { mode: 'GOVERNANCE', days: 1 } });
    const { id, outs } = await provider.create(i);
    const lock = (await raw.send(new GetObjectLockConfigurationCommand({ Bucket: i.bucket }))).ObjectLockConfiguration;
    assert.equal(lock?.ObjectLockEnabled, 'Enabled');
    assert.deepEqual(lock?.Rule?.DefaultRetention, { Mode: 'GOVERNANCE', Days: 1 });
    assert.equal((await raw.send(new GetBucketVersioningCommand({ Bucket: i.bucket }))).Status, 'Enabled');
    assert.deepEqual((await provider.read!(id, outs!)).props!.objectLock, { mode: 'GOVERNANCE', days: 1 });

    // A new object is retained by default; deleting its version needs the governance bypass.
    await put(i.bucket, 'locked.db');
    const versions = (await raw.send(new ListObjectVersionsCommand({ Bucket: i.bucket }))).Versions ?? [];
    const retention = await raw.send(new GetObjectRetentionCommand({ Bucket: i.bucket, Key: 'locked.db', VersionId: versions[0]!.VersionId }));
    assert.equal(retention.Retention?.Mode, 'GOVERNANCE');
    await assert.rejects(
      raw.send(new DeleteObjectCommand({ Bucket: i.bucket, Key: 'locked.db', VersionId: versions[0]!.VersionId })),
      'the version is really locked',
    );

    await provider.delete!(id, { ...outs!, forceDestroy: true });
    assert.equal(await exists(i.bucket), false);
  });

  it('a failure after CreateBucket deletes the new bucket again, so a retry does not meet "already exists"', async () => {
    // MinIO refuses default retentions this long (InvalidArgument): the bucket exists by then.
    const i = inputs({ objectLock: { mode: 'GOVERNANCE', days: 100_000 } });
    await assert.rejects(
      provider.create(i),
      clearError(/: PutObjectLockConfiguration failed: InvalidArgument \(HTTP 400\): .*; the new, empty bucket was deleted again$/, i.bucket),
    );
    assert.equal(await exists(i.bucket), false);
  });

  it('creating a bucket that already exists fails clearly and does not adopt it', async () => {
    const i = inputs();
    await raw.send(new CreateBucketCommand({ Bucket: i.bucket }));
    await put(i.bucket, 'keep-me');
    await assert.rejects(provider.create(i), clearError(/^S3Bucket create of bucket .*: the bucket already exists; .*existing bucket/, i.bucket));
    // Untouched: not versioned, still holding its object.
    assert.equal((await raw.send(new GetBucketVersioningCommand({ Bucket: i.bucket }))).Status, undefined);

    // And one the provider created itself: a second create fails the same way.
    const j = inputs();
    await provider.create(j);
    await assert.rejects(provider.create(j), clearError(/the bucket already exists/, j.bucket));
  });

  it('wrong credentials fail with a message naming bucket, call and cause, without the secret', async () => {
    const secret = 'WRONG-secret-' + randomBytes(12).toString('hex');
    const i = inputs({ secretAccessKey: secret });
    await assert.rejects(
      provider.create(i),
      clearError(/^S3Bucket create of bucket ".*" at http:\/\/127\.0\.0\.1:\d+: CreateBucket failed: SignatureDoesNotMatch .*check accessKeyId\/secretAccessKey/, i.bucket, secret),
    );
    assert.equal(await exists(i.bucket), false);

    const j = inputs();
    const { id, outs } = await provider.create(j);
    await assert.rejects(provider.read!(id, { ...outs!, secretAccessKey: secret }), clearError(/^S3Bucket read of bucket .*: HeadBucket failed: /, j.bucket, secret));
    await assert.rejects(provider.delete!(id, { ...outs!, secretAccessKey: secret }), clearError(/^S3Bucket delete of bucket .*: DeleteBucket failed: /, j.bucket, secret));
    assert.ok(await exists(j.bucket));
  });

  it('an unreachable endpoint fails in one line naming the bucket', async () => {
    const i = inputs({ endpoint: 'http://127.0.0.1:1' });
    await assert.rejects(provider.create(i), clearError(/^S3Bucket create of bucket ".*" at http:\/\/127\.0\.0\.1:1: HeadBucket failed: ECONNREFUSED/, i.bucket));
  });

  it('works with checksumMode when_required (lifecycle, forceDestroy with DeleteObjects)', async () => {
    const i = inputs({ checksumMode: 'when_required', expirationDays: 3, forceDestroy: true });
    const { id, outs } = await provider.create(i);
    assert.equal((await lifecycle(i.bucket)).find((r) => r.ID === LIFECYCLE_RULE_ID)?.Expiration?.Days, 3);
    await put(i.bucket, 'a');
    await put(i.bucket, 'a', 'b');
    await provider.delete!(id, outs!);
    assert.equal(await exists(i.bucket), false);
  });

  it('check reports bad arguments per property and skips unknown values', async () => {
    const ok = { ...base, bucket: 'good-name' };
    assert.deepEqual(await provider.check!(ok, ok), { inputs: ok });
    assert.deepEqual(await provider.check!(ok, { ...ok, bucket: UNKNOWN, expirationDays: UNKNOWN as unknown as number }), {
      inputs: { ...ok, bucket: UNKNOWN, expirationDays: UNKNOWN },
    });
    const bad = await provider.check!(ok, { ...ok, bucket: 'Bad_Name', expirationDays: 0, objectLock: { mode: 'GOVERNANCE', days: -1 } });
    assert.deepEqual(
      bad.failures?.map((f) => f.property),
      ['bucket', 'expirationDays', 'objectLock.days'],
    );
    // And create refuses them before any S3 call.
    await assert.rejects(provider.create({ ...ok, bucket: 'Bad_Name' }), /^Error: S3Bucket create of bucket "Bad_Name".*: bucket: "Bad_Name" must be 3-63/);
  });

  it('read after the bucket was deleted behind Pulumi’s back returns no id', async () => {
    const i = inputs();
    const { id, outs } = await provider.create(i);
    await raw.send(new DeleteBucketCommand({ Bucket: i.bucket }));
    assert.equal((await provider.read!(id, outs!)).id, undefined);
    // Without recorded state (an import) there are no credentials to read with.
    await assert.rejects(provider.read!(id, {} as S3BucketOutputs), clearError(/cannot be imported.*existing bucket/, i.bucket));
  });

  describe('the serialized provider (as Pulumi’s dynamic-provider host loads it)', () => {
    let providerText: string;
    let recorded: Awaited<ReturnType<typeof setupMocks>>;
    const rejections: unknown[] = [];
    const onRejection = (e: unknown) => rejections.push(e);

    before(async () => {
      process.on('unhandledRejection', onRejection);
      recorded = await setupMocks();
    });
    after(() => {
      process.off('unhandledRejection', onRejection);
    });

    it('registers a resource whose __provider serialized and whose secret key is a secret', async () => {
      const { S3Bucket, S3_BUCKET_TYPE } = await import('../../packages/pulumi/src/bucket/index.js');
      recorded.reset();
      const res = new S3Bucket('backups', {
        bucket: 'etcd-backups',
        endpoint: base.endpoint,
        accessKeyId: 'AKID',
        secretAccessKey: 'the-secret-value',
        expirationDays: 14,
        objectLock: pulumi.output({ mode: 'GOVERNANCE' as const, days: 1 }),
      });
      assert.equal(await outputValue(res.id), 'backups-id');
      assert.equal(await outputValue(res.bucket), 'etcd-backups');
      assert.equal(await outputValue(res.expirationDays), 14);
      assert.equal(await pulumi.isSecret(res.secretAccessKey), true, 'the secret key output is a secret');
      assert.equal(await pulumi.isSecret(res.bucket), false);

      const r = recorded.find(S3_BUCKET_TYPE, 'backups');
      assert.equal(r.custom, true);
      assert.equal(typeof r.inputs.__provider, 'string');
      providerText = r.inputs.__provider;
      assert.match(providerText, /exports\.handler/);
      assert.match(providerText, /@aws-sdk\/client-s3/);
      assert.ok(pulumi.runtime.isRpcSecret(r.inputs.secretAccessKey), 'the secret key input is a secret');
      assert.equal(pulumi.runtime.unwrapRpcSecret(r.inputs.secretAccessKey), 'the-secret-value');
      assert.ok(!providerText.includes('the-secret-value'), 'no secret in the provider text');
      assert.deepEqual(rejections, [], 'no unhandled rejection (a failed closure serialization shows only as one)');
    });

    it('the serialized text loads like the host loads it and creates/deletes a real bucket', async () => {
      assert.ok(providerText, 'set by the previous test');
      // What @pulumi/pulumi's dynamic-provider host does (require-from-string): compile as a CommonJS module.
      const m = new Module('', undefined) as Module & { _compile(code: string, filename: string): void; paths: string[] };
      m.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(process.cwd());
      m._compile(providerText, '');
      const loaded = (m.exports as { handler: () => typeof provider }).handler();
      const i = inputs({ expirationDays: 5 });
      const { id, outs } = await loaded.create(i);
      assert.ok(await exists(i.bucket));
      assert.equal((await lifecycle(i.bucket))[0]?.Expiration?.Days, 5);
      assert.deepEqual((await loaded.check!(i, { ...i, bucket: 'X' })).failures?.[0]?.property, 'bucket');
      await loaded.delete!(id, outs!);
      assert.equal(await exists(i.bucket), false);
    });

    it('a bad bucket name, expirationDays or objectLock.days throws at construction naming the argument', async () => {
      const { S3Bucket } = await import('../../packages/pulumi/src/bucket/index.js');
      const args = { bucket: 'good-name', accessKeyId: 'a', secretAccessKey: 's' };
      assert.throws(() => new S3Bucket('bad1', { ...args, bucket: 'Bad_Name' }), {
        message: /^S3Bucket "bad1": bucket: "Bad_Name" must be 3-63 characters/,
      });
      assert.throws(() => new S3Bucket('bad2', { ...args, bucket: '192.168.0.1' }), { message: /^S3Bucket "bad2": bucket: .*IP address/ });
      assert.throws(() => new S3Bucket('bad3', { ...args, expirationDays: 0 }), { message: /^S3Bucket "bad3": expirationDays: must be a whole number of days greater than 0/ });
      assert.throws(() => new S3Bucket('bad4', { ...args, objectLock: { mode: 'GOVERNANCE', days: 0 } }), {
        message: /^S3Bucket "bad4": objectLock\.days: must be a whole number of days greater than 0/,
      });
      assert.throws(() => new S3Bucket('bad5', { ...args, objectLock: { mode: 'COMPLIANCE', days: 3 }, versioning: false }), {
        message: /^S3Bucket "bad5": versioning: must not be false when objectLock is set/,
      });
      // Unknown values are not judged at construction.
      recorded.reset();
      const later = new S3Bucket('later', { ...args, bucket: pulumi.output('later-bucket'), expirationDays: Promise.resolve(3) });
      assert.equal(await outputValue(later.bucket), 'later-bucket');
      assert.deepEqual(
        recorded.resources.map((r) => r.name),
        ['later'],
      );
    });
  });
});
