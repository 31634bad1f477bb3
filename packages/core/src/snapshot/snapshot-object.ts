import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import type { GetOptions } from '../store/object-store.js';
import type { Catalog, SnapshotRecord } from './catalog.js';
import { decryptStream, looksLikeAge } from './encryption.js';


/**
 * The one way to read a backup's snapshot bytes: streamed from the bucket and, when its record says
 * it is encrypted, decrypted on the way (with the catalog's identities). Yields the plain etcd
 * snapshot (db + sha256 trailer) either way, so every verifier and restore path is the same.
 * A record and object that disagree (the record says plain, the object is an age file, or the
 * reverse) is SNAPSHOT_CORRUPT naming which: the record was edited, or the object replaced.
 */
export async function* readSnapshot(catalog: Catalog, record: SnapshotRecord, opts: GetOptions = {}): AsyncGenerator<Buffer> {
  const raw = catalog.store.get(layout.snapshotObject(catalog.cluster, record.name), opts);
  const what = `backup ${record.name}`;
  if (record.encryption) {
    // Opened beside the caller on the thread pool where the native opener is there (age-native.ts);
    // a borrowing caller gets the plain bytes in reused buffers, as it gets the bucket's.
    yield* decryptStream(raw, { what, keys: catalog.keys, recipients: record.encryption.recipients, ...(opts.borrow ? { borrow: true } : {}) });
    return;
  }
  let first = true;
  for await (const chunk of raw) {
    if (first && looksLikeAge(chunk)) {
      throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `${what} is an age-encrypted object, but its catalog record says it is not encrypted (record and object disagree)`, {
        hint: 'nothing was changed; the record was edited or the object replaced: choose another backup, or restore its record from your records',
      });
    }
    first = false;
    yield chunk;
  }
}

/** Plain bytes a snapshot object holds, from its size in the bucket (for progress only). */
export function plainSizeEstimate(record: SnapshotRecord, objectSize: number): number {
  if (!record.encryption) return objectSize;
  return Math.max(0, Math.round((objectSize - 200) * (65536 / 65552)));
}
