import { Agent as HttpsAgent } from 'node:https';
import { Agent as HttpAgent } from 'node:http';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PutObjectCommand, S3Client, S3ClientConfig, UploadPartCommand } from '@aws-sdk/client-s3';
import { EtcdRecoverError, messageOf } from '../errors.js';
import { crc32c } from '../crc32c.js';
import { asBuffer } from '../streams.js';
import { directGet, DirectGetDeclined, localhostLookup, type DirectGetRequest } from './direct-get.js';
import type { GetOptions, ObjectInfo, ObjectStore, PutOptions, UploadOptions } from './object-store.js';
import { normalizePrefix, readCredentialsFile, sseCustomerKey, validateS3Config, type S3Config } from './s3-config.js';

/** SSE parameters of a write (PutObject, CreateMultipartUpload). */
type SseWrite = { ServerSideEncryption?: 'AES256' | 'aws:kms'; SSEKMSKeyId?: string } & SseCustomer;
/** SSE-C parameters, which every request on an SSE-C object repeats (GetObject, HeadObject, UploadPart, CompleteMultipartUpload). */
type SseCustomer = { SSECustomerAlgorithm?: 'AES256'; SSECustomerKey?: string };

type Sdk = typeof import('@aws-sdk/client-s3');
let sdkModules: Promise<[Sdk, typeof import('@smithy/node-http-handler')]> | undefined;
/**
 * The AWS SDK is loaded on first use, not with this module: it costs ~30 MB of
 * memory and ~60 ms of start-up that commands working on local files (verify
 * --file, agent steps, status) never need.
 */
const loadSdk = () => (sdkModules ??= Promise.all([import('@aws-sdk/client-s3'), import('@smithy/node-http-handler')]));

type BuildArgs = { request: unknown };
type BuildStack = {
  add(mw: (next: (args: BuildArgs) => Promise<unknown>) => (args: BuildArgs) => Promise<unknown>, opts: { step: 'build'; name: string }): void;
};
/**
 * A part that carries its CRC-32C is sent with an unsigned payload
 * (`x-amz-content-sha256: UNSIGNED-PAYLOAD`, what the SDK already does over
 * HTTPS): the store checks the CRC-32C, and neither side spends a SHA-256 pass
 * over every byte for a digest that only duplicates it. The request itself
 * stays signed. Without a checksum (checksumMode "when_required") the payload
 * hash is kept, so plain-HTTP uploads always carry an integrity check.
 */
function unsignedWhenChecksummed<C extends UploadPartCommand | PutObjectCommand>(command: C): C {
  if (!command.input.ChecksumCRC32C) return command;
  (command.middlewareStack as unknown as BuildStack).add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      return next(args);
    },
    { step: 'build', name: 'etcdRecoverUnsignedPayload' },
  );
  return command;
}

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

  /**
   * Multipart upload of a stream of unknown length with bounded memory: parts
   * of `partSize` are filled by copying the incoming chunks once, and at most
   * `queueSize` are in flight. Each part carries its CRC-32C (computed natively)
   * so the store verifies what it received — unless checksumMode is
   * "when_required", for stores that reject the newer checksums. A body shorter
   * than one part becomes a single PUT. On any failure the multipart upload is
   * aborted, so no parts linger.
   */
  async upload(key: string, body: AsyncIterable<Uint8Array>, opts: UploadOptions = {}): Promise<{ size: number; etag?: string }> {
    const { client, sdk } = await this.connect();
    const partSize = this.config.partSize ?? 5 * 1024 * 1024;
    const queueSize = this.config.queueSize ?? 1;
    const checksums = this.config.checksumMode !== 'when_required';
    const Key = this.k(key);
    const signal = opts.signal;
    const common = {
      Bucket: this.bucket,
      Key,
      ContentType: opts.contentType ?? 'application/octet-stream',
      ...(opts.metadata ? { Metadata: opts.metadata } : {}),
      ...this.#sseWrite,
    };
    let uploadId: string | undefined;
    const parts: { ETag: string; PartNumber: number; ChecksumCRC32C?: string }[] = [];
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    let size = 0;
    let sent = 0;
    let partNumber = 0;
    // Part buffers are pooled: exactly queueSize + 1 of them exist, whatever the object's size
    // (left to the GC, finished parts would pile up in the old generation first).
    const pool: Buffer[] = [];
    const take = () => pool.pop() ?? Buffer.allocUnsafe(partSize);
    let buf = take();
    let fill = 0;

    const sendPart = (data: Buffer, n: number, owner: Buffer): void => {
      const crc = checksums ? crc32cBase64(data) : undefined;
      const p = (async () => {
        const r = await client.send(
          unsignedWhenChecksummed(new sdk.UploadPartCommand({ Bucket: this.bucket, Key, UploadId: uploadId, PartNumber: n, Body: data, ContentLength: data.length, ...(crc ? { ChecksumCRC32C: crc } : {}), ...this.#sseCustomer })),
          { abortSignal: signal },
        );
        parts[n - 1] = { ETag: r.ETag!, PartNumber: n, ...(crc ? { ChecksumCRC32C: crc } : {}) };
        sent += data.length;
        pool.push(owner);
        opts.onProgress?.({ bytes: sent });
      })();
      const tracked = p.then(
        () => void inflight.delete(tracked),
        (e) => {
          inflight.delete(tracked);
          failure ??= e;
        },
      );
      inflight.add(tracked);
    };
    const flush = async (): Promise<void> => {
      if (!uploadId) {
        const r = await client.send(new sdk.CreateMultipartUploadCommand({ ...common, ...(checksums ? { ChecksumAlgorithm: 'CRC32C' } : {}) }), { abortSignal: signal });
        uploadId = r.UploadId;
      }
      // Wait for a free slot only now that the next part is full: the part before it uploaded
      // while this one filled.
      while (inflight.size >= queueSize) await Promise.race(inflight);
      if (failure) throw failure;
      sendPart(buf.subarray(0, fill), ++partNumber, buf);
      buf = take();
      fill = 0;
    };

    try {
      for await (const c of body) {
        const chunk = asBuffer(c);
        size += chunk.length;
        for (let off = 0; off < chunk.length; ) {
          const n = Math.min(partSize - fill, chunk.length - off);
          chunk.copy(buf, fill, off, off + n);
          fill += n;
          off += n;
          if (fill === partSize) await flush();
        }
      }
      if (!uploadId) {
        const data = buf.subarray(0, fill);
        const crc = checksums ? crc32cBase64(data) : undefined;
        const r = await client.send(unsignedWhenChecksummed(new sdk.PutObjectCommand({ ...common, Body: data, ContentLength: data.length, ...(crc ? { ChecksumCRC32C: crc } : {}) })), { abortSignal: signal });
        opts.onProgress?.({ bytes: size });
        return { size, ...(r.ETag ? { etag: r.ETag } : {}) };
      }
      if (fill > 0) await flush();
      while (inflight.size) await Promise.race(inflight);
      if (failure) throw failure;
      const r = await client.send(
        new sdk.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...this.#sseCustomer }),
        { abortSignal: signal },
      );
      return { size, ...(r.ETag ? { etag: r.ETag } : {}) };
    } catch (e) {
      await Promise.allSettled(inflight);
      if (uploadId) {
        await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId })).catch(() => undefined);
      }
      if (e instanceof EtcdRecoverError) throw e;
      throw this.mapError(e, `uploading ${key}`);
    }
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
    if (e instanceof EtcdRecoverError) return e;
    const mapped = this.classify(e, doing);
    if (!this.#secrets.some((k) => mapped.message.includes(k))) return mapped;
    const redact = (t: string) => this.#secrets.reduce((acc, k) => acc.split(k).join('[redacted]'), t);
    return new EtcdRecoverError(mapped.code, redact(mapped.message), { cause: e, retryable: mapped.retryable, ...(mapped.hint ? { hint: redact(mapped.hint) } : {}) });
  }

  /** The failures that come from server-side encryption, named as such (or undefined). */
  private sseProblem(name: string, status: number | undefined, doing: string, message: string, where: string, e: unknown): EtcdRecoverError | undefined {
    const sse = this.config.sse;
    if (KMS_ERROR.test(name)) {
      const key = sse?.mode === 'SSE-KMS' && sse.kmsKeyId ? `the SSE-KMS key "${sse.kmsKeyId}"` : sse?.mode === 'SSE-KMS' ? "the bucket's default SSE-KMS key" : "the object's KMS key";
      return new EtcdRecoverError('CONFIG', `${doing}: ${key} cannot be used at ${where} (${name}${message && message !== name ? `: ${message}` : ''})`, {
        cause: e,
        hint: 'name a KMS key the store has and these credentials may use (kms:GenerateDataKey, kms:Decrypt)',
      });
    }
    if (status !== 400 || !/^(reading|inspecting) /.test(doing)) return undefined;
    // A HEAD answer has no body: a 400 to it is how S3 refuses SSE-C parameters that do not fit the object.
    const bodiless = /^inspecting /.test(doing) && ['Unknown', 'BadRequest', '400', ''].includes(name);
    if (sse?.mode !== 'SSE-C' && (/Server Side Encryption/i.test(message) || bodiless)) {
      return new EtcdRecoverError('ENCRYPTION_KEY', `${doing}: the object is encrypted with a customer-provided key (SSE-C) and none is configured${bodiless ? ' (HTTP 400 to HEAD)' : ''}`, {
        cause: e,
        hint: 'configure the SSE-C key the backups were written with',
      });
    }
    if (sse?.mode === 'SSE-C' && (/encryption parameters are not applicable/i.test(message) || bodiless)) {
      return new EtcdRecoverError('ENCRYPTION_KEY', `${doing}: the object is not encrypted with a customer-provided key (SSE-C), but one is configured${bodiless ? ' (HTTP 400 to HEAD)' : ''}`, {
        cause: e,
        hint: 'objects written before SSE-C was configured are read without it: use a configuration without the SSE-C key for them',
      });
    }
    return undefined;
  }

  private classify(e: unknown, doing: string): EtcdRecoverError {
    const err = e as { name?: string; code?: string; Code?: string; $metadata?: { httpStatusCode?: number }; cause?: { code?: string } };
    const name = err.name ?? err.Code ?? '';
    const status = err.$metadata?.httpStatusCode;
    const netCode = err.code ?? err.cause?.code ?? '';
    const where = this.config.endpoint ?? 'AWS S3';
    if (name === 'AbortError') return new EtcdRecoverError('ABORTED', `${doing}: aborted`, { cause: e });
    const sse = this.sseProblem(name, status, doing, messageOf(e), where, e);
    if (sse) return sse;
    if (name === 'NoSuchBucket' || (status === 404 && /bucket/i.test(doing))) {
      return new EtcdRecoverError('BUCKET_NOT_FOUND', `bucket "${this.bucket}" does not exist at ${where}`, {
        cause: e,
        hint: 'create it (the Pulumi component can) or pass the right --bucket / --s3-endpoint',
      });
    }
    if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
      return new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `${doing}: not found in s3://${this.bucket}/${this.prefix}`, { cause: e });
    }
    if (['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'InvalidToken', 'ExpiredToken', 'CredentialsProviderError'].includes(name) || status === 403 || status === 401) {
      const what = name === 'SignatureDoesNotMatch' ? 'the secret key is wrong' : name === 'InvalidAccessKeyId' ? 'the access key id is unknown' : name === 'CredentialsProviderError' ? 'no credentials were found' : 'access was denied';
      // S3 answers a read with an SSE-C key other than the object's with the same 403 as a policy refusal.
      const ssecRead = what === 'access was denied' && this.config.sse?.mode === 'SSE-C' && /^(reading|inspecting) /.test(doing);
      return new EtcdRecoverError('ACCESS_DENIED', `${doing} at ${where}: ${ssecRead ? 'access was denied, or the SSE-C key is not the one the object was written with' : what} (bucket "${this.bucket}")`, {
        cause: e,
        hint: `${ssecRead ? 'check the SSE-C key the backups were written with, then ' : 'check '}the S3 credentials (--s3-credentials-file, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket policy`,
      });
    }
    if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|EPIPE|ENETUNREACH|EHOSTUNREACH|socket hang up|TimeoutError/i.test(`${netCode} ${name} ${messageOf(e)}`)) {
      return new EtcdRecoverError('STORE_UNREACHABLE', `${doing}: S3 endpoint ${where} is unreachable (${netCode || name || messageOf(e)})`, {
        cause: e,
        hint: 'check --s3-endpoint and that the object store is up; the operation can be retried',
      });
    }
    if (status !== undefined && status >= 500) {
      return new EtcdRecoverError('STORE_UNREACHABLE', `${doing}: the object store answered ${status} ${name}`, { cause: e, retryable: true });
    }
    if (/self[- ]signed|certificate|UNABLE_TO_VERIFY/i.test(`${netCode} ${messageOf(e)}`)) {
      return new EtcdRecoverError('STORE_UNREACHABLE', `${doing}: TLS to ${where} failed (${netCode || messageOf(e)})`, {
        cause: e,
        retryable: false,
        hint: 'pass the endpoint CA bundle with --s3-ca-file',
      });
    }
    return new EtcdRecoverError('STORE_ERROR', `${doing}: ${name || 'error'}: ${messageOf(e)}`, { cause: e });
  }
}

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  // A KMS key that is gone answers 404 too (MinIO: kms:KeyNotFound): that is no missing object.
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || (err.$metadata?.httpStatusCode === 404 && err.name !== 'NoSuchBucket' && !KMS_ERROR.test(err.name ?? ''));
}

/** Errors of the store's KMS: AWS "KMS.NotFoundException", "KMS.DisabledException"…; MinIO "kms:KeyNotFound"… */
const KMS_ERROR = /^kms[.:]/i;

function crc32cBase64(data: Buffer): string {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(crc32c(data) >>> 0);
  return out.toString('base64');
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
