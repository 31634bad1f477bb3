import { createHash } from 'node:crypto';
import { EtcdRecoverError } from '../errors.js';
import type { GetOptions, ObjectInfo, ObjectStore, PutOptions, UploadOptions } from './object-store.js';

interface Entry {
  body: Buffer;
  etag: string;
  lastModified: Date;
}

/** An in-memory ObjectStore for unit tests; passes the same contract suite as S3. */
export class MemoryObjectStore implements ObjectStore {
  readonly description = 'memory://';
  private readonly objects = new Map<string, Entry>();
  /** Page size for list(), small so that tests exercise pagination. */
  constructor(private readonly pageSize = 1000) {}

  async probe(): Promise<void> {}

  private set(key: string, body: Buffer): string {
    const etag = createHash('md5').update(body).digest('hex');
    this.objects.set(key, { body, etag, lastModified: new Date() });
    return etag;
  }

  async upload(key: string, body: AsyncIterable<Uint8Array>, opts: UploadOptions = {}): Promise<{ size: number; etag?: string }> {
    const parts: Buffer[] = [];
    let bytes = 0;
    for await (const c of body) {
      opts.signal?.throwIfAborted();
      parts.push(Buffer.from(c));
      bytes += c.length;
      opts.onProgress?.({ bytes });
    }
    const etag = this.set(key, Buffer.concat(parts));
    return { size: bytes, etag };
  }

  async put(key: string, body: Buffer | string, opts: PutOptions = {}): Promise<boolean> {
    const cur = this.objects.get(key);
    if (opts.ifNoneMatch && cur) return false;
    if (opts.ifMatch !== undefined && cur?.etag !== opts.ifMatch) return false;
    this.set(key, Buffer.from(body));
    return true;
  }

  async *get(key: string, opts: GetOptions = {}): AsyncIterable<Buffer> {
    const e = this.objects.get(key);
    if (!e) throw notFound(key);
    for (let i = 0; i < e.body.length; i += 64 * 1024) {
      opts.signal?.throwIfAborted();
      yield e.body.subarray(i, i + 64 * 1024);
    }
  }

  async read(key: string): Promise<{ body: Buffer; etag?: string } | undefined> {
    const e = this.objects.get(key);
    return e ? { body: e.body, etag: e.etag } : undefined;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const e = this.objects.get(key);
    return e ? { key, size: e.body.length, lastModified: e.lastModified, etag: e.etag } : undefined;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    for (let i = 0; i < keys.length; i += this.pageSize) {
      for (const k of keys.slice(i, i + this.pageSize)) {
        const e = this.objects.get(k)!;
        yield { key: k, size: e.body.length, lastModified: e.lastModified, etag: e.etag };
      }
    }
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }
}

export function notFound(key: string): EtcdRecoverError {
  return new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `object ${key} does not exist in the bucket`, {
    hint: 'run `kubectl etcd-recover backup list` to see what the bucket holds',
  });
}
