import { Agent as HttpsAgent } from 'node:https';
import { Agent as HttpAgent } from 'node:http';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { EtcdRecoverError } from '../errors.js';
import { directGet, DirectGetDeclined, localhostLookup, type DirectGetRequest } from './direct-get.js';
import type { GetOptions, ObjectInfo, ObjectStore, PutOptions, UploadOptions } from './object-store.js';
import { isNotFound, s3Error } from './s3-errors.js';
import { multipartUpload, type Sdk, type SseCustomer, type SseWrite } from './s3-upload.js';
import { normalizePrefix, readCredentialsFile, sseCustomerKey, validateS3Config, type S3Config } from './s3-config.js';

let sdkModules: Promise<[Sdk, typeof import('@smithy/node-http-handler')]> | undefined;
/**
 * The AWS SDK is loaded on first use, not with this module: it costs ~30 MB of
 * memory and ~60 ms of start-up that commands working on local files (verify
 * --file, agent steps, status) never need.
 */
const loadSdk = () => (sdkModules ??= Promise.all([import('@aws-sdk/client-s3'), import('@smithy/node-http-handler')]));

/** ObjectStore over any S3-compatible service, through the AWS SDK v3. */
export class S3ObjectStore implements ObjectStore {
  readonly description: string;
  /** The SDK and a client, made on first use (see loadSdk). */
  private readonly connect: () => Promise<{ client: S3Client; sdk: Sdk }>;
  private connected: Promise<{ client: S3Client; sdk: Sdk }> | undefined;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly ca: Buffer | undefined;
  private readonly config: S3Config;
  /**
   * SSE parameters for writes, and the SSE-C ones every request on an object repeats; the same
   * as signed headers for the direct GET. Private (#) fields: they hold the SSE-C key, and are not
   * in a dump or an inspect of the store.
   */
  readonly #sseWrite: SseWrite;
  readonly #sseCustomer: SseCustomer;
  readonly #sseHeaders: Record<string, string>;
  /** Strings never to be repeated in an error message (the SSE-C key). */
  readonly #secrets: string[] = [];

  constructor(config: S3Config) {
    validateS3Config(config);
    const sse = config.sse;
    let customer: SseCustomer = {};
    let headers: Record<string, string> = {};
    if (sse?.mode === 'SSE-C') {
      const key = sseCustomerKey(sse);
      // Base64 of exactly 32 bytes: the SDK sends it as it is and adds its MD5.
      customer = { SSECustomerAlgorithm: 'AES256', SSECustomerKey: key.toString('base64') };
      headers = {
        'x-amz-server-side-encryption-customer-algorithm': 'AES256',
        'x-amz-server-side-encryption-customer-key': key.toString('base64'),
        'x-amz-server-side-encryption-customer-key-md5': createHash('md5').update(key).digest('base64'),
      };
      this.#secrets.push(sse.key);
      // The configuration kept on the object holds no key (it is not in a dump or an inspect of the store).
      config = { ...config, sse: { mode: 'SSE-C', key: '[redacted]' } };
    }
    this.config = config;
    this.#sseCustomer = customer;
    this.#sseHeaders = headers;
    this.#sseWrite =
      sse?.mode === 'SSE-S3' ? { ServerSideEncryption: 'AES256' }
      : sse?.mode === 'SSE-KMS' ? { ServerSideEncryption: 'aws:kms', ...(sse.kmsKeyId ? { SSEKMSKeyId: sse.kmsKeyId } : {}) }
      : customer;
    this.bucket = config.bucket;
    this.prefix = normalizePrefix(config.prefix);
    this.description = `s3://${this.bucket}/${this.prefix}` + (config.endpoint ? ` (${config.endpoint})` : '');
    const timeout = config.requestTimeoutMs ?? 60_000;
    const ca = (this.ca = config.caFile ? readCa(config.caFile) : undefined);
    const cfg: S3ClientConfig = {
      region: config.region ?? 'us-east-1',
      maxAttempts: config.maxAttempts ?? 5,
      retryMode: 'standard',
      forcePathStyle: config.forcePathStyle ?? Boolean(config.endpoint),
      requestChecksumCalculation: config.checksumMode === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
      responseChecksumValidation: config.checksumMode === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
    };
    if (config.endpoint) cfg.endpoint = config.endpoint;
    if (config.credentials) cfg.credentials = config.credentials;
    else if (config.credentialsFile) cfg.credentials = readCredentialsFile(config.credentialsFile, config.profile);
    this.connect = () =>
      (this.connected ??= loadSdk().then(([sdk, { NodeHttpHandler }]) => {
        cfg.requestHandler = new NodeHttpHandler({
          connectionTimeout: 5_000,
          requestTimeout: timeout,
          httpAgent: new HttpAgent({ keepAlive: true, maxSockets: 16, lookup: localhostLookup }),
          httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: 16, lookup: localhostLookup, ...(ca ? { ca } : {}) }),
        });
        return { client: new sdk.S3Client(cfg), sdk };
      }));
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  async probe(signal?: AbortSignal): Promise<void> {
    const { client, sdk } = await this.connect();
    try {
      await client.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
    } catch (e) {
      throw this.mapError(e, 'checking the bucket');
    }
  }

  /** Creates the bucket if it does not exist (sandbox and tests; production buckets come from the Pulumi component). */
  async ensureBucket(signal?: AbortSignal): Promise<void> {
    const { client, sdk } = await this.connect();
    try {
      await client.send(new sdk.CreateBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (name === 'BucketAlreadyOwnedByYou' || name === 'BucketAlreadyExists') return;
      throw this.mapError(e, 'creating the bucket');
    }
  }

  /** Closes pooled connections. */
  destroy(): void {
    void this.connected?.then((c) => c.client.destroy(), () => undefined);
  }

  /** A stream of unknown length in bounded memory: see multipartUpload. */
  async upload(key: string, body: AsyncIterable<Uint8Array>, opts: UploadOptions = {}): Promise<{ size: number; etag?: string }> {
    const { client, sdk } = await this.connect();
    return multipartUpload({
      client,
      sdk,
      bucket: this.bucket,
      objectKey: this.k(key),
      partSize: this.config.partSize ?? 5 * 1024 * 1024,
      queueSize: this.config.queueSize ?? 1,
      checksums: this.config.checksumMode !== 'when_required',
      sseWrite: this.#sseWrite,
      sseCustomer: this.#sseCustomer,
      mapError: (e) => this.mapError(e, `uploading ${key}`),
    }, body, opts);
  }

  async put(key: string, body: Buffer | string, opts: PutOptions = {}): Promise<boolean> {
    const { client, sdk } = await this.connect();
    try {
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key: this.k(key),
          Body: typeof body === 'string' ? Buffer.from(body) : body,
          ContentType: opts.contentType ?? 'application/json',
          ...(opts.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
          ...(opts.ifMatch ? { IfMatch: opts.ifMatch } : {}),
          ...this.#sseWrite,
        }),
        { abortSignal: opts.signal },
      );
      return true;
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const name = (e as { name?: string }).name;
      if ((opts.ifNoneMatch || opts.ifMatch) && (status === 412 || status === 409 || name === 'PreconditionFailed')) return false;
      throw this.mapError(e, `writing ${key}`);
    }
  }

  async *get(key: string, opts: GetOptions = {}): AsyncIterable<Buffer> {
    let offset = 0;
    let etag: string | undefined;
    const maxResumes = this.config.maxAttempts ?? 5;
    let attempt = 0;
    for (;;) {
      opts.signal?.throwIfAborted();
      try {
        for await (const b of this.bodyFrom(key, offset, etag, opts, (t) => (etag ??= t))) {
          offset += b.length;
          attempt = 0;
          yield b;
        }
        return;
      } catch (e) {
        const mapped = this.mapError(e, `reading ${key}`);
        if (!mapped.retryable || attempt >= maxResumes || opts.signal?.aborted) throw mapped;
        attempt++;
        opts.onRetry?.({ offset, attempt, error: mapped.message });
        await sleep(Math.min(200 * 2 ** attempt, 5_000), undefined, opts.signal ? { signal: opts.signal } : undefined);
      }
    }
  }

  /**
   * One attempt's body from `offset` (only this version of the object: If-Match). A borrowing
   * caller gets the direct GET; an answer that path does not handle (an error status, no
   * response) repeats the attempt through the SDK, for its typed errors.
   */
  private async *bodyFrom(key: string, offset: number, etag: string | undefined, opts: GetOptions, onEtag: (etag: string | undefined) => void): AsyncIterable<Buffer> {
    const direct = opts.borrow ? await this.directGetRequest(key, offset, etag, opts.signal) : undefined;
    if (direct) {
      try {
        yield* directGet({ ...direct, onHead: (h) => onEtag(h.etag) });
        return;
      } catch (e) {
        if (!(e instanceof DirectGetDeclined)) throw e;
      }
    }
    const { client, sdk } = await this.connect();
    const r = await client.send(
      new sdk.GetObjectCommand({
        Bucket: this.bucket,
        Key: this.k(key),
        ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}),
        ...(etag ? { IfMatch: etag } : {}),
        ...this.#sseCustomer,
      }),
      { abortSignal: opts.signal },
    );
    onEtag(r.ETag);
    yield* r.Body as Readable;
  }

  async read(key: string, signal?: AbortSignal): Promise<{ body: Buffer; etag?: string } | undefined> {
    const { client, sdk } = await this.connect();
    try {
      const r = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.k(key), ...this.#sseCustomer }), { abortSignal: signal });
      const body = Buffer.from(await r.Body!.transformToByteArray());
      return { body, ...(r.ETag ? { etag: r.ETag } : {}) };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw this.mapError(e, `reading ${key}`);
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    const { client, sdk } = await this.connect();
    try {
      const r = await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.k(key), ...this.#sseCustomer }), { abortSignal: signal });
      return {
        key,
        size: r.ContentLength ?? 0,
        ...(r.LastModified ? { lastModified: r.LastModified } : {}),
        ...(r.ETag ? { etag: r.ETag } : {}),
      };
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw this.mapError(e, `inspecting ${key}`);
    }
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    const { client, sdk } = await this.connect();
    let token: string | undefined;
    do {
      let r;
      try {
        r = await client.send(
          new sdk.ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.k(prefix),
            MaxKeys: this.config.listPageSize ?? 1000,
            ...(token ? { ContinuationToken: token } : {}),
          }),
          { abortSignal: signal },
        );
      } catch (e) {
        throw this.mapError(e, 'listing the bucket');
      }
      for (const o of r.Contents ?? []) {
        if (!o.Key) continue;
        yield {
          key: o.Key.slice(this.prefix.length),
          size: o.Size ?? 0,
          ...(o.LastModified ? { lastModified: o.LastModified } : {}),
          ...(o.ETag ? { etag: o.ETag } : {}),
        };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    const { client, sdk } = await this.connect();
    try {
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.k(key) }), { abortSignal: signal });
    } catch (e) {
      throw this.mapError(e, `deleting ${key}`);
    }
  }

  /**
   * The signed request for a direct (borrowed-buffer) GET, for a custom endpoint:
   * addressed by path (MinIO and other in-cluster stores, the sandbox), or
   * virtual-hosted (`forcePathStyle: false`: the bucket in the host name, as the SDK
   * addresses it). Undefined means "use the SDK": AWS itself (no endpoint: its
   * endpoint rules are the SDK's), a dotted bucket name virtual-hosted (the SDK's
   * rules for those depend on the scheme), or a signing failure, which the SDK then
   * reports as its usual typed error.
   */
  private async directGetRequest(key: string, offset: number, etag: string | undefined, signal?: AbortSignal): Promise<DirectGetRequest | undefined> {
    if (!this.config.endpoint) return undefined;
    const { client } = await this.connect();
    try {
      const base = new URL(this.config.endpoint);
      // As the SDK's endpoint rules: an IP-address endpoint is always addressed by path.
      const virtual = this.config.forcePathStyle === false && !isIP(base.hostname.replace(/^\[|\]$/g, ''));
      if (virtual && this.bucket.includes('.')) return undefined;
      const segments = [...(virtual ? [] : [this.bucket]), ...this.k(key).split('/')].map(encodeS3Segment).join('/');
      const url = new URL(`${base.protocol}//${virtual ? `${this.bucket}.` : ''}${base.host}${base.pathname.replace(/\/$/, '')}/${segments}`);
      const config = client.config as unknown as {
        signer: () => Promise<{ sign(r: unknown, o: unknown): Promise<{ headers: Record<string, string> }> }>;
        region: () => Promise<string>;
      };
      const signer = await config.signer();
      const signed = await signer.sign(
        {
          method: 'GET',
          protocol: url.protocol,
          hostname: url.hostname,
          ...(url.port ? { port: Number(url.port) } : {}),
          path: url.pathname,
          query: {},
          headers: {
            host: url.host,
            'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
            ...(offset > 0 ? { range: `bytes=${offset}-` } : {}),
            ...(etag ? { 'if-match': etag } : {}),
            ...this.#sseHeaders,
          },
        },
        { signingRegion: await config.region(), signingService: 's3' },
      );
      return {
        url,
        headers: signed.headers,
        timeoutMs: this.config.requestTimeoutMs ?? 60_000,
        ...(this.ca ? { ca: this.ca } : {}),
        ...(signal ? { signal } : {}),
      };
    } catch {
      return undefined;
    }
  }

  /** One clear line naming the problem; never includes credentials or the SSE-C key. */
  mapError(e: unknown, doing: string): EtcdRecoverError {
    return s3Error(e, doing, { bucket: this.bucket, prefix: this.prefix, ...(this.config.endpoint ? { endpoint: this.config.endpoint } : {}), ...(this.config.sse ? { sse: this.config.sse } : {}), secrets: this.#secrets });
  }
}

/** RFC 3986 encoding of one path segment, as S3 signs it (no double encoding). */
function encodeS3Segment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new EtcdRecoverError('CONFIG', `cannot read S3 CA file ${path}`, { cause: e });
  }
}
