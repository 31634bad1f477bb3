import { EtcdRecoverError } from '../errors.js';
import type { RevisionBatch } from '../etcd/replication.js';
import { layout } from '../layout.js';
import type { Catalog } from '../snapshot/catalog.js';
import { decryptStream, encryptStream, looksLikeAge } from '../snapshot/encryption.js';
import { decodeSegment, encodeSegment, segmentName, type DecodedSegment, type SegmentRef } from './segment.js';

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

/**
 * Writes one segment: encoded, age-encrypted when the backups are (the catalog has recipients), in one
 * PUT that never replaces an object (If-None-Match). Returns its reference.
 */
export async function writeSegment(catalog: Catalog, chain: string, batches: readonly RevisionBatch[], leases: Record<string, number>, signal?: AbortSignal): Promise<SegmentRef> {
  const plain = encodeSegment({ cluster: catalog.cluster, chain, batches, leases });
  const body = catalog.keys?.canEncrypt ? await collect(encryptStream(once(plain), catalog.keys.recipients)) : plain;
  const first = batches[0]!;
  const last = batches[batches.length - 1]!;
  const name = segmentName(first.revision, last.revision, first.at, last.at);
  const key = layout.archiveSegment(catalog.cluster, chain, name);
  const created = await catalog.store.put(key, body, { contentType: 'application/octet-stream', ifNoneMatch: true, ...(signal ? { signal } : {}) });
  if (!created) {
    // Written already (a retry after a lost response): the same range of the same chain holds the same events.
    const have = await catalog.store.head(key, signal);
    if (!have) throw new EtcdRecoverError('STORE_ERROR', `archive segment ${key} was neither written nor found`);
  }
  return { key, chain, first: first.revision, last: last.revision, firstAt: first.at, lastAt: last.at, size: body.length };
}

/** Reads, decrypts and checks one segment. */
export async function readSegment(catalog: Catalog, ref: SegmentRef, signal?: AbortSignal): Promise<DecodedSegment> {
  const got = await catalog.store.read(ref.key, signal);
  if (!got) {
    throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `archive segment ${ref.key} (revisions ${ref.first}-${ref.last}) is listed but cannot be read`, {
      hint: 'a point in time before this segment can still be restored',
    });
  }
  let body = got.body;
  if (looksLikeAge(body)) body = await collect(decryptStream(once(body), { what: `archive segment ${ref.key}`, keys: catalog.keys }));
  return decodeSegment(body, ref);
}
