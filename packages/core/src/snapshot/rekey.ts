import { createHash } from 'node:crypto';
import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { readJson, type ObjectStore } from '../store/object-store.js';
import { ENCRYPTED_RECORD_FORMAT, type Catalog, type SnapshotRecord } from './catalog.js';
import { encryptStream } from './encryption.js';
import { readSnapshot } from './snapshot-object.js';
import { SnapshotVerifier, describeDefects } from './verifier/index.js';

export type RekeyOutcome = 'rekeyed' | 'already' | 'finished' | 'failed';

export interface RekeyResult {
  name: string;
  outcome: RekeyOutcome;
  from: string[] | 'plain';
  to: string[];
  /** Why it failed (outcome "failed"): the backup was left as it was. */
  error?: string;
}

interface Marker {
  name: string;
  recipients: string[];
  objectSha256: string;
  objectSize: number;
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));

async function shaOf(store: ObjectStore, key: string, signal?: AbortSignal): Promise<{ sha256: string; size: number } | undefined> {
  if (!(await store.head(key, signal))) return undefined;
  const h = createHash('sha256');
  let size = 0;
  for await (const c of store.get(key, { borrow: true, ...(signal ? { signal } : {}) })) {
    h.update(c);
    size += c.length;
  }
  return { sha256: h.digest('hex'), size };
}

async function copy(store: ObjectStore, from: string, to: string, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  async function* body(): AsyncGenerator<Uint8Array> {
    for await (const c of store.get(from, signal ? { signal } : {})) {
      h.update(c);
      yield c;
    }
  }
  await store.upload(to, body(), { contentType: 'application/octet-stream', ...(signal ? { signal } : {}) });
  return h.digest('hex');
}

/**
 * Re-encrypts one backup for the catalog's current recipients (key rotation; or encrypts a plain
 * one). Nothing good is lost at any point:
 *   1. the old object is read and decrypted with the catalog's identities, verified natively on the
 *      way (sha256 against the record), and re-encrypted into a staging object beside it;
 *   2. the staging object is read back and its sha256 proven; a marker names it;
 *   3. the old object is copied aside (proven by its sha256), then replaced by the staging object
 *      (proven again), and only then is the record rewritten;
 *   4. the staging object, the copy and the marker are removed.
 * Interrupted anywhere, a rerun finishes the job (the marker says what the new object is); until
 * then the old bytes survive in the object itself or in the copy aside.
 */
export async function rekeyBackup(catalog: Catalog, name: string, o: { signal?: AbortSignal; progress?: (m: string) => void } = {}): Promise<RekeyResult> {
  const { store, cluster } = catalog;
  const signal = o.signal;
  const progress = o.progress ?? (() => undefined);
  const keys = catalog.keys;
  if (!keys?.canEncrypt) {
    throw new EtcdRecoverError('ENCRYPTION_KEY', 'backup rekey needs the new age recipients', { hint: 'pass --age-recipients-file (the new public keys) and --age-identity-file (a key that opens the old backups)' });
  }
  const to = [...keys.recipients];
  const objectKey = layout.snapshotObject(cluster, name);
  const stagingKey = layout.rekeyStaging(cluster, name);
  const previousKey = layout.rekeyPrevious(cluster, name);
  const markerKey = layout.rekeyMarker(cluster, name);
  let record = await catalog.get(name, signal);
  const from: RekeyResult['from'] = record.encryption ? [...record.encryption.recipients] : 'plain';

  const finish = async (m: Marker): Promise<void> => {
    // 3. Copy the old object aside (unless already replaced), replace it, prove the replacement.
    const current = await shaOf(store, objectKey, signal);
    if (current?.sha256 !== m.objectSha256) {
      if (!(await store.head(previousKey, signal))) {
        progress(`${name}: keeping the old object aside while it is replaced`);
        const copied = await copy(store, objectKey, previousKey, signal);
        const proven = await shaOf(store, previousKey, signal);
        if (proven?.sha256 !== copied) throw new EtcdRecoverError('STORE_ERROR', `${name}: the copy of the old object aside does not read back as written; nothing was replaced`);
      }
      const written = await copy(store, stagingKey, objectKey, signal);
      const proven = await shaOf(store, objectKey, signal);
      if (written !== m.objectSha256 || proven?.sha256 !== m.objectSha256) {
        throw new EtcdRecoverError('STORE_ERROR', `${name}: the re-encrypted object does not read back as written; the old one is kept at ${previousKey}`, {
          hint: 'rerun `backup rekey`; it finishes from the marker',
        });
      }
    }
    const next: SnapshotRecord = { ...record, formatVersion: ENCRYPTED_RECORD_FORMAT, objectSize: m.objectSize, encryption: { format: 'age', recipients: m.recipients, objectSha256: m.objectSha256 } };
    await catalog.writeRecord(next, signal);
    record = next;
    // 4. Clean up: the record now describes the object in place.
    for (const k of [stagingKey, previousKey, markerKey]) await store.delete(k, signal);
  };

  // An interrupted earlier run: finish what its marker describes, if its staging object is intact.
  const earlier = await readJson<Marker>(store, markerKey, signal);
  if (earlier) {
    const staged = await shaOf(store, stagingKey, signal);
    const inPlace = await shaOf(store, objectKey, signal);
    if (staged?.sha256 === earlier.value.objectSha256 || inPlace?.sha256 === earlier.value.objectSha256) {
      progress(`${name}: finishing an interrupted rekey`);
      await finish(earlier.value);
      return { name, outcome: 'finished', from, to: earlier.value.recipients };
    }
    await store.delete(markerKey, signal);
  }
  if (record.encryption && sameSet(record.encryption.recipients, to)) return { name, outcome: 'already', from, to };

  // 1. Decrypt, verify, re-encrypt into the staging object.
  progress(`${name}: re-encrypting for ${to.length} recipient(s)`);
  const verifier = new SnapshotVerifier({ requireTrailer: true });
  async function* plain(): AsyncGenerator<Uint8Array> {
    for await (const c of readSnapshot(catalog, record, signal ? { signal } : {})) {
      verifier.update(c);
      yield c;
    }
  }
  const h = createHash('sha256');
  async function* sealed(): AsyncGenerator<Uint8Array> {
    for await (const c of encryptStream(plain(), to)) {
      h.update(c);
      yield c;
    }
  }
  let size: number;
  try {
    size = (await store.upload(stagingKey, sealed(), { contentType: 'application/octet-stream', ...(signal ? { signal } : {}) })).size;
  } catch (e) {
    await store.delete(stagingKey).catch(() => undefined);
    throw e;
  }
  const report = verifier.finish();
  if (!report.ok || report.sha256 !== record.sha256) {
    await store.delete(stagingKey).catch(() => undefined);
    throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `${name} did not verify while it was re-encrypted (${report.ok ? 'sha256 differs from its record' : describeDefects(report)}); it was left as it was`, {
      hint: '`backup verify` it; a corrupt backup is not worth re-encrypting',
    });
  }
  // 2. Prove the staging object, and name it in the marker.
  const marker: Marker = { name, recipients: to, objectSha256: h.digest('hex'), objectSize: size };
  const staged = await shaOf(store, stagingKey, signal);
  if (staged?.sha256 !== marker.objectSha256) throw new EtcdRecoverError('STORE_ERROR', `${name}: the re-encrypted object does not read back as written; the old one was not touched`);
  await store.put(markerKey, JSON.stringify(marker, null, 2) + '\n', { contentType: 'application/json', ...(signal ? { signal } : {}) });
  await finish(marker);
  return { name, outcome: 'rekeyed', from, to };
}
