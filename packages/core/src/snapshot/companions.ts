import { createHash } from 'node:crypto';
import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import type { Catalog, CompanionKind, RecordCompanions, SnapshotRecord } from './catalog.js';

export type { RecordCompanions } from './catalog.js';
import { decryptStream, encryptStream } from './encryption.js';

/**
 * Companion resources: what a restored etcd is useless without (the hosted API server's encryption
 * configuration and service-account signing key, etcd's TLS Secrets, the backup credentials). Each
 * backup captures them, always encrypted, as one object beside its snapshot
 * (`<snapshot>.companions`, an age file of this JSON), named with its sha256 in the record.
 */
export interface CompanionItem {
  kind: CompanionKind;
  name: string;
  /** Secret type (e.g. kubernetes.io/tls). */
  type?: string;
  /** Base64 values, as the API returns them (Secret data; ConfigMap binaryData). */
  data?: Record<string, string>;
  /** ConfigMap text values. */
  stringData?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface CompanionBundle {
  apiVersion: 'etcd-recover.io/v1';
  kind: 'CompanionBundle';
  namespace: string;
  capturedAt: string;
  items: CompanionItem[];
  /** Named in the contract but absent (or unreadable) when the backup was taken. */
  missing: { kind: CompanionItem['kind']; name: string; reason?: string }[];
}

/** A source of companions at backup time (the Kubernetes API in the backup Job). */
export type CompanionSource = () => Promise<Omit<CompanionBundle, 'apiVersion' | 'kind' | 'capturedAt'>>;

/** The same content of two items (what is compared before a restore decides "differs"). */
export function sameCompanion(a: CompanionItem, b: CompanionItem): boolean {
  const norm = (x: CompanionItem) => JSON.stringify([x.type ?? '', sorted(x.data), sorted(x.stringData)]);
  return norm(a) === norm(b);
}

function sorted(r: Record<string, string> | undefined): [string, string][] {
  return Object.entries(r ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Encrypts and uploads a bundle beside the snapshot `name`; refused without recipients (companions
 * hold the cluster's keys: they are never stored in the clear). Returns what the record keeps.
 */
export async function storeCompanions(catalog: Catalog, name: string, bundle: CompanionBundle, signal?: AbortSignal): Promise<RecordCompanions> {
  if (!catalog.keys?.canEncrypt) {
    throw new EtcdRecoverError('ENCRYPTION_KEY', 'companion resources are never stored unencrypted, and no age recipients are configured', {
      hint: 'configure backup encryption (backup.encryption on the component, or --age-recipients-file), or remove the companions',
    });
  }
  const plain = Buffer.from(JSON.stringify(bundle));
  const sha256 = createHash('sha256').update(plain).digest('hex');
  const objectKey = layout.companionsObject(catalog.cluster, name);
  async function* one(): AsyncGenerator<Uint8Array> {
    yield plain;
  }
  const chunks: Buffer[] = [];
  for await (const c of encryptStream(one(), catalog.keys.recipients)) chunks.push(c);
  const body = Buffer.concat(chunks);
  await catalog.store.put(objectKey, body, { contentType: 'application/octet-stream', ...(signal ? { signal } : {}) });
  return { objectKey, objectSize: body.length, sha256, items: bundle.items.map((i) => ({ kind: i.kind, name: i.name })), missing: bundle.missing };
}

/** Reads, decrypts and checks (sha256 against the record) the companions saved with a backup. */
export async function readCompanions(catalog: Catalog, record: SnapshotRecord, signal?: AbortSignal): Promise<CompanionBundle> {
  const c = record.companions;
  if (!c) {
    throw new EtcdRecoverError('PRECONDITION', `backup ${record.name} was taken without companion resources`, {
      hint: 'choose a backup taken after companions were declared (`backup list -o wide`), or restore without --restore-companions',
    });
  }
  const got = await catalog.store.read(c.objectKey, signal);
  if (!got) throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `the companions of backup ${record.name} (${c.objectKey}) are missing from the bucket`);
  async function* one(): AsyncGenerator<Uint8Array> {
    yield got!.body;
  }
  const parts: Buffer[] = [];
  for await (const p of decryptStream(one(), { what: `the companions of backup ${record.name}`, keys: catalog.keys, recipients: record.encryption?.recipients ?? [] })) parts.push(p);
  const plain = Buffer.concat(parts);
  if (createHash('sha256').update(plain).digest('hex') !== c.sha256) {
    throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `the companions of backup ${record.name} do not match their record (sha256)`, { hint: 'choose another backup' });
  }
  const bundle = JSON.parse(plain.toString('utf8')) as CompanionBundle;
  if (bundle.kind !== 'CompanionBundle') throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `the companions of backup ${record.name} are not a companion bundle`);
  return bundle;
}

export type CompanionAction = 'created' | 'same' | 'differs' | 'replaced';

export interface CompanionOutcome {
  kind: CompanionItem['kind'];
  name: string;
  action: CompanionAction;
}

/** Where companions are recreated (the Kubernetes API of the cluster's namespace). */
export interface CompanionSink {
  read(kind: CompanionItem['kind'], name: string): Promise<CompanionItem | undefined>;
  create(item: CompanionItem): Promise<void>;
  replace(item: CompanionItem): Promise<void>;
}

/**
 * Recreates the missing companions; existing ones that differ are reported ("differs") and kept,
 * unless `overwrite` (then "replaced"). Idempotent: a rerun finds them "same".
 */
export async function restoreCompanions(bundle: CompanionBundle, sink: CompanionSink, o: { overwrite?: boolean; dryRun?: boolean } = {}): Promise<CompanionOutcome[]> {
  const out: CompanionOutcome[] = [];
  for (const item of bundle.items) {
    const now = await sink.read(item.kind, item.name);
    let action: CompanionAction;
    if (!now) action = 'created';
    else if (sameCompanion(now, item)) action = 'same';
    else action = o.overwrite ? 'replaced' : 'differs';
    if (!o.dryRun) {
      if (action === 'created') await sink.create(item);
      if (action === 'replaced') await sink.replace(item);
    }
    out.push({ kind: item.kind, name: item.name, action });
  }
  return out;
}
