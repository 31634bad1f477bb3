import * as pulumi from '@pulumi/pulumi';
import { s3BucketProvider, type ChecksumMode, type ObjectLockSpec } from './provider.js';
import { argProblems, UNKNOWN } from './validate.js';

export interface S3BucketArgs {
  /** Bucket name; validated by S3's rules (bucketNameProblem) at construction when known. */
  bucket: pulumi.Input<string>;
  /** S3-compatible endpoint (MinIO, Ceph RGW, …); default: AWS. */
  endpoint?: pulumi.Input<string>;
  /** Default "us-east-1". */
  region?: pulumi.Input<string>;
  /** Path-style addressing; default: true when an endpoint is set. */
  forcePathStyle?: pulumi.Input<boolean>;
  accessKeyId: pulumi.Input<string>;
  /** Always stored as a Pulumi secret (in inputs, state and outputs). */
  secretAccessKey: pulumi.Input<string>;
  /** The AWS SDK's checksum mode; "when_required" for stores that reject the newer CRC checksums. Default "when_supported". */
  checksumMode?: pulumi.Input<ChecksumMode>;
  /** Default true. */
  versioning?: pulumi.Input<boolean>;
  /** Lifecycle rule: expire objects under `expirationPrefix` after N days (noncurrent versions too when versioned). Default: none. */
  expirationDays?: pulumi.Input<number>;
  /** Default "" (the whole bucket). */
  expirationPrefix?: pulumi.Input<string>;
  /** Object lock (needs versioning; only settable at creation: changing it replaces the bucket). */
  objectLock?: pulumi.Input<ObjectLockSpec>;
  /** Delete all objects (and versions) on destroy. Default false: destroying a non-empty bucket fails with a clear message. */
  forceDestroy?: pulumi.Input<boolean>;
}

/** The Pulumi type token of S3Bucket resources. */
export const S3_BUCKET_TYPE = 'pulumi-nodejs:dynamic/etcd-recover:S3Bucket';

/** The plain values of the arguments; values not known yet (Outputs, Promises) become UNKNOWN. */
function plainView(args: S3BucketArgs): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args ?? {})) {
    view[k] = pulumi.Output.isInstance(v) || v instanceof Promise ? UNKNOWN : v;
  }
  return view;
}

/**
 * A bucket on any S3-compatible store, created, configured (versioning,
 * expiration, object lock) and deleted by a Pulumi dynamic provider.
 * It never adopts an existing bucket: creating one that exists fails.
 */
export class S3Bucket extends pulumi.dynamic.Resource {
  // `declare`: class fields would overwrite the outputs the base constructor sets.
  declare readonly bucket: pulumi.Output<string>;
  declare readonly endpoint: pulumi.Output<string | undefined>;
  declare readonly region: pulumi.Output<string>;
  declare readonly forcePathStyle: pulumi.Output<boolean>;
  declare readonly accessKeyId: pulumi.Output<string>;
  declare readonly secretAccessKey: pulumi.Output<string>;
  declare readonly checksumMode: pulumi.Output<ChecksumMode>;
  declare readonly versioning: pulumi.Output<boolean>;
  declare readonly expirationDays: pulumi.Output<number | undefined>;
  declare readonly expirationPrefix: pulumi.Output<string | undefined>;
  declare readonly objectLock: pulumi.Output<ObjectLockSpec | undefined>;
  declare readonly forceDestroy: pulumi.Output<boolean>;

  constructor(name: string, args: S3BucketArgs, opts: pulumi.CustomResourceOptions = {}) {
    const problems = argProblems(plainView(args));
    if (problems.length) throw new Error(`S3Bucket "${name}": ${problems.map((p) => `${p.property}: ${p.reason}`).join('; ')}`);
    super(
      s3BucketProvider,
      name,
      {
        bucket: args.bucket,
        endpoint: args.endpoint,
        region: args.region,
        forcePathStyle: args.forcePathStyle,
        accessKeyId: args.accessKeyId,
        secretAccessKey: pulumi.secret(args.secretAccessKey),
        checksumMode: args.checksumMode,
        versioning: args.versioning,
        expirationDays: args.expirationDays,
        expirationPrefix: args.expirationPrefix,
        objectLock: args.objectLock,
        forceDestroy: args.forceDestroy,
      },
      { ...opts, additionalSecretOutputs: [...new Set([...(opts.additionalSecretOutputs ?? []), 'secretAccessKey'])] },
      'etcd-recover',
      'S3Bucket',
    );
  }
}
