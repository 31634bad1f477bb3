import type * as S3 from '@aws-sdk/client-s3';
import type * as pulumi from '@pulumi/pulumi';
import type { ArgProblem } from './validate.js';

/*
 * The dynamic provider behind S3Bucket. Pulumi serializes this object and every
 * function it reaches into the stack's state and runs it in its dynamic-provider
 * host, so:
 *   - the AWS SDK is imported INSIDE the methods (a captured module-level import
 *     fails closure serialization, silently);
 *   - the methods are arrow functions using only the helpers of this file
 *     (nothing that holds sockets, files or classes);
 *   - argProblems() is imported inside them too, by package name: a module-level
 *     import of it would capture its module and, through bucketNameProblem, all of
 *     @etcd-recover/core (whose async generators the serializer cannot parse) —
 *     found by the real engine (test/engine), which Pulumi's mocks never showed;
 *   - only types are imported at module level (they vanish at compile time).
 */

/** The package path of validate.ts (a variable, so the import resolves where the provider runs). */
const VALIDATE_MODULE = '@etcd-recover/pulumi/bucket-validate';

async function problemsOf(a: object): Promise<ArgProblem[]> {
  const { argProblems } = (await import(VALIDATE_MODULE)) as typeof import('./validate.js');
  return argProblems(a as Record<string, unknown>);
}

export type ChecksumMode = 'when_supported' | 'when_required';
export interface ObjectLockSpec {
  mode: 'GOVERNANCE' | 'COMPLIANCE';
  days: number;
}

/** What the provider receives: S3Bucket's arguments, resolved, defaults not yet applied. */
export interface S3BucketInputs {
  bucket: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  accessKeyId: string;
  secretAccessKey: string;
  checksumMode?: ChecksumMode;
  versioning?: boolean;
  expirationDays?: number;
  expirationPrefix?: string;
  objectLock?: ObjectLockSpec;
  forceDestroy?: boolean;
}

/** The resource's state: the arguments with every default applied. */
export interface S3BucketOutputs {
  bucket: string;
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  accessKeyId: string;
  secretAccessKey: string;
  checksumMode: ChecksumMode;
  versioning: boolean;
  /** Present only when a lifecycle rule is configured. */
  expirationDays?: number;
  /** Present (default "") only when expirationDays is. */
  expirationPrefix?: string;
  objectLock?: ObjectLockSpec;
  forceDestroy: boolean;
}

/** The ID of the one lifecycle rule S3Bucket manages; other rules on the bucket are left alone. */
export const LIFECYCLE_RULE_ID = 'etcd-recover-expiration';

type Sdk = typeof S3;
interface Conn {
  s3: Sdk;
  client: S3.S3Client;
  o: S3BucketOutputs;
  op: string;
}

/** Defaults applied, unknown keys (like __provider) dropped. Idempotent. */
function normalize(i: S3BucketInputs | S3BucketOutputs): S3BucketOutputs {
  const endpoint = i.endpoint || undefined;
  const o: S3BucketOutputs = {
    bucket: i.bucket,
    region: i.region || 'us-east-1',
    forcePathStyle: i.forcePathStyle ?? Boolean(endpoint),
    accessKeyId: i.accessKeyId,
    secretAccessKey: i.secretAccessKey,
    checksumMode: i.checksumMode ?? 'when_supported',
    versioning: i.versioning ?? true,
    forceDestroy: i.forceDestroy ?? false,
  };
  if (endpoint) o.endpoint = endpoint;
  if (i.expirationDays !== undefined && i.expirationDays !== null) {
    o.expirationDays = i.expirationDays;
    o.expirationPrefix = i.expirationPrefix ?? '';
  }
  if (i.objectLock) o.objectLock = { mode: i.objectLock.mode, days: i.objectLock.days };
  return o;
}

/** Removes credentials and line breaks from a message; caps its length. */
function scrub(text: string, o: Partial<S3BucketOutputs>): string {
  let t = text;
  for (const secret of [o.secretAccessKey, o.accessKeyId]) {
    if (secret && secret.length >= 3) t = t.split(secret).join('***');
  }
  t = t.replace(/\s+/g, ' ').trim();
  return t.length > 600 ? t.slice(0, 597) + '...' : t;
}

/** "bucket "x" at http://host:port" (no userinfo from the endpoint). */
function where(o: Partial<S3BucketOutputs>): string {
  let at = '';
  if (o.endpoint) {
    try {
      const u = new URL(o.endpoint);
      u.username = '';
      u.password = '';
      at = ` at ${u.origin}${u.pathname === '/' ? '' : u.pathname}`;
    } catch {
      at = ' at (invalid endpoint)';
    }
  }
  return `bucket "${o.bucket}"${at}`;
}

function fail(op: string, o: Partial<S3BucketOutputs>, what: string): Error {
  return new Error(scrub(`S3Bucket ${op} of ${where(o)}: ${what}`, o));
}

function errCode(e: unknown): string {
  const err = e as { name?: string; code?: string; Code?: string } | undefined;
  if (err && typeof err === 'object') {
    if (err.Code) return String(err.Code);
    if (err.name && err.name !== 'Error' && err.name !== 'AggregateError') return err.name;
    if (err.code) return String(err.code);
    const inner = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.length) return errCode(inner[0]);
  }
  return 'Error';
}

function httpStatus(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** "Code (HTTP 403): message" for an SDK or network error. */
function describeError(e: unknown): string {
  const code = errCode(e);
  const status = httpStatus(e);
  const err = e as { message?: string; errors?: { message?: string }[] } | undefined;
  let msg = (err && typeof err === 'object' && err.message) || '';
  if (!msg && Array.isArray(err?.errors) && err.errors.length) msg = err.errors[0]?.message ?? '';
  if (!msg && !(err && typeof err === 'object')) msg = String(e);
  msg = msg.trim().replace(/\.$/, '');
  if (msg === 'UnknownError' || msg === code) msg = '';
  return `${code}${status ? ` (HTTP ${status})` : ''}${msg ? `: ${msg}` : ''}`;
}

const UNSUPPORTED = ['NotImplemented', 'NotImplementedError', 'XNotImplemented', 'UnsupportedOperation'];
/** What a store says when it or the bucket lacks object lock (not argument errors: those are reported as they are). */
const LOCK_UNSUPPORTED = [...UNSUPPORTED, 'InvalidBucketState', 'ObjectLockConfigurationNotFoundError'];
/** GetObjectLockConfiguration answers meaning "no lock here". */
const NO_LOCK = [...LOCK_UNSUPPORTED, 'InvalidRequest'];
const CREDENTIALS = ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken', 'Forbidden', 'CredentialsProviderError'];
const GONE = ['NoSuchBucket', 'NotFound'];

/**
 * The error of one failed S3 call: the feature the store lacks, or the call and
 * its cause (with a hint for credential problems). One line, no credentials.
 */
function stepError(c: Pick<Conn, 'o' | 'op'>, call: string, e: unknown, feature?: { name: string; codes: string[] }): Error {
  const code = errCode(e);
  if (feature && feature.codes.includes(code)) {
    return fail(c.op, c.o, `${feature.name} is not supported by this store or bucket (${call} answered ${describeError(e)})`);
  }
  const hint = CREDENTIALS.includes(code) ? '; check accessKeyId/secretAccessKey and their permissions' : '';
  return fail(c.op, c.o, `${call} failed: ${describeError(e)}${hint}`);
}

async function connect(o: S3BucketOutputs, op: string): Promise<Conn> {
  const s3 = await import('@aws-sdk/client-s3');
  const mode = o.checksumMode === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
  const cfg: S3.S3ClientConfig = {
    region: o.region,
    forcePathStyle: o.forcePathStyle,
    credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
    maxAttempts: 3,
    requestChecksumCalculation: mode,
    responseChecksumValidation: mode,
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
  };
  if (o.endpoint) cfg.endpoint = o.endpoint;
  return { s3, client: new s3.S3Client(cfg), o, op };
}

async function assertValid(o: S3BucketOutputs, op: string): Promise<void> {
  const problems = await problemsOf(o);
  if (problems.length) throw fail(op, o, problems.map((p) => `${p.property}: ${p.reason}`).join('; '));
}

async function applyVersioning(c: Conn, enabled: boolean): Promise<void> {
  try {
    await c.client.send(
      new c.s3.PutBucketVersioningCommand({ Bucket: c.o.bucket, VersioningConfiguration: { Status: enabled ? 'Enabled' : 'Suspended' } }),
    );
  } catch (e) {
    throw stepError(c, 'PutBucketVersioning', e, { name: 'versioning', codes: UNSUPPORTED });
  }
}

/** Sets or removes S3Bucket's own lifecycle rule, keeping any other rule on the bucket. */
async function applyLifecycle(c: Conn, fresh: boolean): Promise<void> {
  const { s3, client, o } = c;
  const feature = { name: 'lifecycle rules (expirationDays)', codes: UNSUPPORTED };
  let existing: S3.LifecycleRule[] = [];
  if (!fresh) {
    try {
      existing = (await client.send(new s3.GetBucketLifecycleConfigurationCommand({ Bucket: o.bucket }))).Rules ?? [];
    } catch (e) {
      const code = errCode(e);
      if (code !== 'NoSuchLifecycleConfiguration' && !(UNSUPPORTED.includes(code) && o.expirationDays === undefined)) {
        throw stepError(c, 'GetBucketLifecycleConfiguration', e, feature);
      }
    }
  }
  const others = existing.filter((r) => r.ID !== LIFECYCLE_RULE_ID);
  const ours: S3.LifecycleRule[] = [];
  if (o.expirationDays !== undefined) {
    ours.push({
      ID: LIFECYCLE_RULE_ID,
      Status: 'Enabled',
      Filter: { Prefix: o.expirationPrefix ?? '' },
      Expiration: { Days: o.expirationDays },
      ...(o.versioning ? { NoncurrentVersionExpiration: { NoncurrentDays: o.expirationDays } } : {}),
    });
  }
  const rules = [...others, ...ours];
  try {
    if (rules.length) {
      await client.send(new s3.PutBucketLifecycleConfigurationCommand({ Bucket: o.bucket, LifecycleConfiguration: { Rules: rules } }));
    } else if (existing.length) {
      await client.send(new s3.DeleteBucketLifecycleCommand({ Bucket: o.bucket }));
    }
  } catch (e) {
    throw stepError(c, rules.length ? 'PutBucketLifecycleConfiguration' : 'DeleteBucketLifecycle', e, feature);
  }
}

/** Deletes every object version and delete marker (page by page); fails naming what could not be deleted. */
async function emptyBucket(c: Conn): Promise<void> {
  const { s3, client, o } = c;
  const bypass = o.objectLock ? true : undefined;
  const failed: string[] = [];
  let failedCount = 0;
  const deleteBatch = async (objects: S3.ObjectIdentifier[]) => {
    if (!objects.length) return;
    let res: S3.DeleteObjectsCommandOutput;
    try {
      res = await client.send(
        new s3.DeleteObjectsCommand({
          Bucket: o.bucket,
          Delete: { Objects: objects, Quiet: true },
          ...(bypass ? { BypassGovernanceRetention: true } : {}),
        }),
      );
    } catch (e) {
      throw stepError(c, 'DeleteObjects (forceDestroy)', e);
    }
    for (const err of res.Errors ?? []) {
      failedCount++;
      if (failed.length < 3) failed.push(`"${err.Key}"${err.VersionId ? ` version ${err.VersionId}` : ''}: ${err.Code ?? 'Error'}${err.Message ? ` (${err.Message})` : ''}`);
    }
  };

  let versioned = true;
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  do {
    let page: S3.ListObjectVersionsCommandOutput;
    try {
      page = await client.send(
        new s3.ListObjectVersionsCommand({ Bucket: o.bucket, MaxKeys: 1000, KeyMarker: keyMarker, VersionIdMarker: versionMarker }),
      );
    } catch (e) {
      if (UNSUPPORTED.includes(errCode(e)) && keyMarker === undefined) {
        versioned = false;
        break;
      }
      throw stepError(c, 'ListObjectVersions (forceDestroy)', e);
    }
    const objects = [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]
      .filter((v) => v.Key !== undefined)
      .map((v) => ({ Key: v.Key!, ...(v.VersionId ? { VersionId: v.VersionId } : {}) }));
    await deleteBatch(objects);
    keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
    versionMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
  } while (keyMarker !== undefined);

  if (!versioned) {
    // A store without the versions API: plain listing.
    let token: string | undefined;
    do {
      let page: S3.ListObjectsV2CommandOutput;
      try {
        page = await client.send(new s3.ListObjectsV2Command({ Bucket: o.bucket, MaxKeys: 1000, ContinuationToken: token }));
      } catch (e) {
        throw stepError(c, 'ListObjectsV2 (forceDestroy)', e);
      }
      await deleteBatch((page.Contents ?? []).filter((x) => x.Key !== undefined).map((x) => ({ Key: x.Key! })));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  if (failedCount) {
    const lock = o.objectLock?.mode === 'COMPLIANCE' ? '; objects under a COMPLIANCE-mode lock cannot be deleted before their retention ends' : '';
    throw fail(c.op, o, `forceDestroy could not delete ${failedCount} object version(s), e.g. ${failed.join('; ')}${lock}`);
  }
}

function sameLock(a?: ObjectLockSpec, b?: ObjectLockSpec): boolean {
  if (!a || !b) return !a && !b;
  return a.mode === b.mode && a.days === b.days;
}

const FIELDS = [
  'bucket',
  'endpoint',
  'region',
  'forcePathStyle',
  'accessKeyId',
  'secretAccessKey',
  'checksumMode',
  'versioning',
  'expirationDays',
  'expirationPrefix',
  'objectLock',
  'forceDestroy',
] as const;
/** Changing one of these recreates the bucket (another bucket, another store, or object lock, which is set at creation only). */
const REPLACING: readonly string[] = ['bucket', 'endpoint', 'region', 'objectLock'];

function changedFields(olds: S3BucketOutputs, news: S3BucketOutputs): string[] {
  return FIELDS.filter((k) => (k === 'objectLock' ? !sameLock(olds.objectLock, news.objectLock) : olds[k] !== news[k]));
}

function dropUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/**
 * The provider of S3Bucket, exported so tests can call its methods directly
 * against a real S3 store. Every method makes real S3 calls.
 */
export const s3BucketProvider: pulumi.dynamic.ResourceProvider<S3BucketInputs, S3BucketOutputs> = {
  check: async (_olds, news) => {
    const failures = await problemsOf(news);
    return failures.length ? { failures } : { inputs: news };
  },

  create: async (inputs) => {
    const o = normalize(inputs);
    await assertValid(o, 'create');
    const c = await connect(o, 'create');
    const { s3, client } = c;
    try {
      // Never adopt an existing bucket silently (AWS us-east-1 even answers 200 to CreateBucket for a bucket you own).
      let exists = false;
      try {
        await client.send(new s3.HeadBucketCommand({ Bucket: o.bucket }));
        exists = true;
      } catch (e) {
        const status = httpStatus(e);
        // 404: free to create. 403/301: someone else's bucket or bad credentials: CreateBucket says which.
        if (!(GONE.includes(errCode(e)) || status === 404 || status === 403 || status === 301)) throw stepError(c, 'HeadBucket', e);
      }
      const adopt =
        'S3Bucket creates new buckets only and does not adopt existing ones; to use an existing bucket, pass it to the component as an existing bucket instead of declaring an S3Bucket for it';
      if (exists) throw fail('create', o, `the bucket already exists; ${adopt}`);
      try {
        await client.send(
          new s3.CreateBucketCommand({
            Bucket: o.bucket,
            ...(o.objectLock ? { ObjectLockEnabledForBucket: true } : {}),
            ...(o.region !== 'us-east-1' ? { CreateBucketConfiguration: { LocationConstraint: o.region as S3.BucketLocationConstraint } } : {}),
          }),
        );
      } catch (e) {
        const code = errCode(e);
        if (code === 'BucketAlreadyOwnedByYou') throw fail('create', o, `the bucket already exists (${code}); ${adopt}`);
        if (code === 'BucketAlreadyExists') throw fail('create', o, `the bucket name is taken by another account (${code}); choose another name`);
        throw stepError(c, 'CreateBucket', e, o.objectLock ? { name: 'object lock', codes: LOCK_UNSUPPORTED } : undefined);
      }
      try {
        if (o.versioning) await applyVersioning(c, true);
        if (o.expirationDays !== undefined) await applyLifecycle(c, true);
        if (o.objectLock) {
          try {
            await client.send(
              new s3.PutObjectLockConfigurationCommand({
                Bucket: o.bucket,
                ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: o.objectLock.mode, Days: o.objectLock.days } } },
              }),
            );
          } catch (e) {
            throw stepError(c, 'PutObjectLockConfiguration', e, { name: 'object lock', codes: LOCK_UNSUPPORTED });
          }
        }
      } catch (e) {
        // Roll back: a half-configured bucket would make every retry fail with "already exists".
        let rollback = 'the new, empty bucket was deleted again';
        try {
          await client.send(new s3.DeleteBucketCommand({ Bucket: o.bucket }));
        } catch (e2) {
          rollback = `deleting the new bucket again failed too (${errCode(e2)}); delete it by hand before retrying`;
        }
        throw new Error(scrub(`${(e as Error).message}; ${rollback}`, o));
      }
      return { id: o.bucket, outs: o };
    } finally {
      client.destroy();
    }
  },

  read: async (id, props) => {
    if (!props || !props.accessKeyId || !props.secretAccessKey) {
      throw new Error(
        `S3Bucket read of bucket "${id}": no recorded state with credentials to read it with; S3Bucket cannot be imported, pass the bucket to the component as an existing bucket instead`,
      );
    }
    const o = normalize({ ...props, bucket: props.bucket ?? id });
    const c = await connect(o, 'read');
    const { s3, client } = c;
    try {
      try {
        await client.send(new s3.HeadBucketCommand({ Bucket: o.bucket }));
      } catch (e) {
        if (GONE.includes(errCode(e)) || httpStatus(e) === 404) return {}; // gone: Pulumi plans a create
        throw stepError(c, 'HeadBucket', e);
      }
      let versioning: boolean;
      try {
        versioning = (await client.send(new s3.GetBucketVersioningCommand({ Bucket: o.bucket }))).Status === 'Enabled';
      } catch (e) {
        if (!UNSUPPORTED.includes(errCode(e))) throw stepError(c, 'GetBucketVersioning', e);
        versioning = false;
      }
      let rule: S3.LifecycleRule | undefined;
      try {
        const rules = (await client.send(new s3.GetBucketLifecycleConfigurationCommand({ Bucket: o.bucket }))).Rules ?? [];
        rule = rules.find((r) => r.ID === LIFECYCLE_RULE_ID);
      } catch (e) {
        const code = errCode(e);
        if (code !== 'NoSuchLifecycleConfiguration' && !UNSUPPORTED.includes(code)) throw stepError(c, 'GetBucketLifecycleConfiguration', e);
      }
      let objectLock: ObjectLockSpec | undefined;
      try {
        const cfg = (await client.send(new s3.GetObjectLockConfigurationCommand({ Bucket: o.bucket }))).ObjectLockConfiguration;
        const r = cfg?.Rule?.DefaultRetention;
        if (cfg?.ObjectLockEnabled === 'Enabled' && r?.Mode && (r.Days || r.Years)) {
          objectLock = { mode: r.Mode as ObjectLockSpec['mode'], days: r.Days ?? (r.Years ?? 0) * 365 };
        }
      } catch (e) {
        if (!NO_LOCK.includes(errCode(e))) throw stepError(c, 'GetObjectLockConfiguration', e);
      }
      const expirationDays = rule && rule.Status === 'Enabled' ? rule.Expiration?.Days : undefined;
      const props2: S3BucketOutputs = dropUndefined({
        ...o,
        versioning,
        expirationDays,
        expirationPrefix: expirationDays !== undefined ? (rule?.Filter?.Prefix ?? rule?.Prefix ?? '') : undefined,
        objectLock,
      });
      return { id, props: props2 };
    } finally {
      client.destroy();
    }
  },

  diff: async (_id, oldsRaw, newsRaw) => {
    const olds = normalize(oldsRaw);
    const news = normalize(newsRaw);
    const changed = changedFields(olds, news);
    const replaces = changed.filter((k) => REPLACING.includes(k));
    return {
      changes: changed.length > 0,
      replaces,
      // The same name cannot exist twice (S3 bucket names are global on AWS): delete the old one first.
      deleteBeforeReplace: replaces.length > 0 && olds.bucket === news.bucket,
    };
  },

  update: async (_id, oldsRaw, newsRaw) => {
    const olds = normalize(oldsRaw);
    const news = normalize(newsRaw);
    await assertValid(news, 'update');
    const versioningChanged = olds.versioning !== news.versioning;
    const lifecycleChanged = versioningChanged || olds.expirationDays !== news.expirationDays || olds.expirationPrefix !== news.expirationPrefix;
    if (versioningChanged || lifecycleChanged) {
      const c = await connect(news, 'update');
      try {
        if (versioningChanged) {
          if (!news.versioning && news.objectLock) throw fail('update', news, 'versioning cannot be suspended on a bucket with object lock');
          await applyVersioning(c, news.versioning);
        }
        if (lifecycleChanged) await applyLifecycle(c, false);
      } finally {
        c.client.destroy();
      }
    }
    return { outs: news };
  },

  delete: async (_id, props) => {
    const o = normalize(props);
    const c = await connect(o, 'delete');
    const { s3, client } = c;
    try {
      for (let attempt = 1; ; attempt++) {
        if (o.forceDestroy) await emptyBucket(c);
        try {
          await client.send(new s3.DeleteBucketCommand({ Bucket: o.bucket }));
          return;
        } catch (e) {
          const code = errCode(e);
          if (code === 'NoSuchBucket' || httpStatus(e) === 404) return; // already gone
          if (code === 'BucketNotEmpty' && !o.forceDestroy) {
            throw fail('delete', o, `the bucket "${o.bucket}" is not empty; set forceDestroy or empty it (${code})`);
          }
          // With forceDestroy, a writer may have raced us: empty it again, a few times.
          if (code === 'BucketNotEmpty' && attempt < 3) continue;
          throw stepError(c, 'DeleteBucket', e);
        }
      }
    } finally {
      client.destroy();
    }
  },
};
