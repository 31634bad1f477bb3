import type { PutObjectCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { EtcdRecoverError } from '../errors.js';
import { crc32c } from '../crc32c.js';
import { asBuffer } from '../streams.js';
import type { UploadOptions } from './object-store.js';

export type Sdk = typeof import('@aws-sdk/client-s3');
/** SSE parameters of a write (PutObject, CreateMultipartUpload). */
export type SseWrite = { ServerSideEncryption?: 'AES256' | 'aws:kms'; SSEKMSKeyId?: string } & SseCustomer;
/** SSE-C parameters, which every request on an SSE-C object repeats (GetObject, HeadObject, UploadPart, CompleteMultipartUpload). */
export type SseCustomer = { SSECustomerAlgorithm?: 'AES256'; SSECustomerKey?: string };

/** Where an upload goes and how: the store's client and settings for one object. */
export interface UploadTarget {
  client: S3Client;
  sdk: Sdk;
  bucket: string;
  /** The object's key in the bucket (with the store's prefix). */
  objectKey: string;
  partSize: number;
  /** Parts in flight at most. */
  queueSize: number;
  /** A CRC-32C with every part (off for checksumMode "when_required"). */
  checksums: boolean;
  sseWrite: SseWrite;
  sseCustomer: SseCustomer;
  /** The store's error mapping for this upload. */
  mapError(e: unknown): EtcdRecoverError;
}

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

/**
 * Multipart upload of a stream of unknown length with bounded memory: parts
 * of `partSize` are filled by copying the incoming chunks once, and at most
 * `queueSize` are in flight. Each part carries its CRC-32C (computed natively)
 * so the store verifies what it received — unless checksumMode is
 * "when_required", for stores that reject the newer checksums. A body shorter
 * than one part becomes a single PUT. On any failure the multipart upload is
 * aborted, so no parts linger.
 */
export async function multipartUpload(t: UploadTarget, body: AsyncIterable<Uint8Array>, opts: UploadOptions = {}): Promise<{ size: number; etag?: string }> {
  const { client, sdk, partSize, queueSize, checksums, objectKey: Key } = t;
  const signal = opts.signal;
  const common = {
    Bucket: t.bucket,
    Key,
    ContentType: opts.contentType ?? 'application/octet-stream',
    ...(opts.metadata ? { Metadata: opts.metadata } : {}),
    ...t.sseWrite,
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
        unsignedWhenChecksummed(new sdk.UploadPartCommand({ Bucket: t.bucket, Key, UploadId: uploadId, PartNumber: n, Body: data, ContentLength: data.length, ...(crc ? { ChecksumCRC32C: crc } : {}), ...t.sseCustomer })),
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
      new sdk.CompleteMultipartUploadCommand({ Bucket: t.bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...t.sseCustomer }),
      { abortSignal: signal },
    );
    return { size, ...(r.ETag ? { etag: r.ETag } : {}) };
  } catch (e) {
    await Promise.allSettled(inflight);
    if (uploadId) {
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket: t.bucket, Key, UploadId: uploadId })).catch(() => undefined);
    }
    if (e instanceof EtcdRecoverError) throw e;
    throw t.mapError(e);
  }
}

function crc32cBase64(data: Buffer): string {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(crc32c(data) >>> 0);
  return out.toString('base64');
}
