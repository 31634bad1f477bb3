/**
 * The object store as etcd-recover needs it: a handful of operations, one
 * factory (createObjectStore), one contract test suite run against every
 * implementation (test/core/store/object-store.contract.ts).
 * Keys are relative to the store's prefix.
 */
export interface ObjectInfo {
  key: string;
  size: number;
  lastModified?: Date;
  etag?: string;
}

export interface UploadProgress {
  bytes: number;
}

export interface UploadOptions {
  signal?: AbortSignal;
  contentType?: string;
  onProgress?: (p: UploadProgress) => void;
  metadata?: Record<string, string>;
}

export interface GetOptions {
  signal?: AbortSignal;
  /** Called when a transient error is retried by resuming from an offset. */
  onRetry?: (info: { offset: number; attempt: number; error: string }) => void;
  /**
   * The caller is done with each chunk before it asks for the next one, so the
   * store may hand out the same memory again (no per-read allocation: see
   * store/direct-get.ts). Never keep a borrowed chunk, or a view of it, past
   * the next iteration.
   */
  borrow?: boolean;
}

export interface PutOptions {
  contentType?: string;
  /** Only create: fails with PreconditionFailed (returns false) if the key exists. */
  ifNoneMatch?: boolean;
  /** Only replace this exact version (etag). */
  ifMatch?: string;
  signal?: AbortSignal;
}

export interface ObjectStore {
  /** Human description without credentials, e.g. s3://bucket/prefix (http://127.0.0.1:9000). */
  readonly description: string;
  /** Fails with a clear EtcdRecoverError if the bucket is missing, credentials are wrong or the endpoint is unreachable. */
  probe(signal?: AbortSignal): Promise<void>;
  /** Streams a body of unknown length (multipart where the store supports it), memory bounded. */
  upload(key: string, body: AsyncIterable<Uint8Array>, opts?: UploadOptions): Promise<{ size: number; etag?: string }>;
  /** Small object write; returns false when a condition (ifNoneMatch/ifMatch) did not hold. */
  put(key: string, body: Buffer | string, opts?: PutOptions): Promise<boolean>;
  /** Streams an object; resumes from the last offset on transient errors. Throws SNAPSHOT_NOT_FOUND-style errors via `notFound`. */
  get(key: string, opts?: GetOptions): AsyncIterable<Buffer>;
  /** Reads a small object whole, or undefined when it does not exist. */
  read(key: string, signal?: AbortSignal): Promise<{ body: Buffer; etag?: string } | undefined>;
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined>;
  /** Every object under the prefix, all pages. */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo>;
  delete(key: string, signal?: AbortSignal): Promise<void>;
}

export async function readJson<T>(store: ObjectStore, key: string, signal?: AbortSignal): Promise<{ value: T; etag?: string } | undefined> {
  const r = await store.read(key, signal);
  if (!r) return undefined;
  return { value: JSON.parse(r.body.toString('utf8')) as T, ...(r.etag ? { etag: r.etag } : {}) };
}

export async function listAll(store: ObjectStore, prefix: string, signal?: AbortSignal): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of store.list(prefix, signal)) out.push(o);
  return out;
}
