/**
 * `backup import`: a backup made by another tool becomes an ordinary backup of this catalog. One
 * streamed pass from the source: unpacked (layouts.ts), verified natively, its member list caught
 * (members.ts), encrypted when the catalog's backups are, uploaded; what came with it is kept
 * beside it; the record, with its provenance, is written last — so a refusal or a failure on the
 * way (damage, a second snapshot in the archive, another cluster's data) leaves no backup behind.
 */
import { createHash } from 'node:crypto';
import { EtcdRecoverError } from '../../errors.js';
import { layout } from '../../layout.js';
import type { Catalog, RecordProvenance, SnapshotRecord } from '../catalog.js';
import { encryptStream } from '../encryption.js';
import { formatSnapshotName } from '../snapshot-name.js';
import { SnapshotVerifier, describeDefects } from '../verifier/index.js';
import type { ImportTool } from './detect.js';
import { foreignError, identify, type ClusterIdentity } from './identity.js';
import { buildRecord } from './record.js';
import { findSnapshot, mapDecodeErrors, type Found } from './layouts.js';
import { MemberCatcher } from './members.js';
import type { ImportSource } from './source.js';

export const NO_TRAILER_NOTE = 'no trailer: integrity not proven (a raw bbolt copy has no sha256 trailer; the sha256 recorded at import proves its bytes from now on)';

export interface ImportProgress {
  phase: 'detect' | 'stream' | 'record';
  message?: string;
  bytes?: number;
}

export interface ImportOptions {
  catalog: Catalog;
  source: ImportSource;
  /** Find, unpack and verify; write nothing. */
  dryRun?: boolean;
  /** Keep a snapshot of another cluster (or of one that cannot be told). */
  forceForeign?: boolean;
  /** The source cluster's etcd ID (hex), when the operator knows it. */
  clusterId?: string;
  /** etcd cluster IDs this cluster had besides its backups' (recoveries change it; the live cluster's): see bucketHistory. */
  lineage?: readonly string[];
  signal?: AbortSignal;
  onProgress?: (p: ImportProgress) => void;
  now?: () => Date;
}

export interface ImportResult {
  dryRun: boolean;
  source: string;
  layout: string;
  tool: ImportTool;
  innerName?: string;
  compression?: string;
  originalTime?: string;
  /** Bytes of the plain snapshot. */
  snapshotBytes: number;
  revision: number;
  totalKeys: number;
  userKeys: number;
  dbSize: number;
  hasTrailer: boolean;
  integrityProven: boolean;
  clusterId: string;
  clusterIdFrom: ClusterIdentity['from'];
  members?: string[];
  notes: string[];
  extras: { name: string; objectKey?: string; sha256?: string }[];
  /** The backup written (not on a dry run). */
  record?: SnapshotRecord;
  /** Set when the very same snapshot (sha256) is in the catalog already: nothing new was written. */
  alreadyImportedAs?: string;
}

const extraKey = (cluster: string, name: string, file: string): string => {
  const safe = file.replace(/[^A-Za-z0-9._-]/g, '_');
  // Never ".db" or ".json": the catalog's listing reads those as snapshots and records.
  return `${layout.snapshotsPrefix(cluster)}${name}.extra.${/\.(db|json)$/.test(safe) ? `${safe}.bin` : safe}`;
};

export async function importBackup(o: ImportOptions): Promise<ImportResult> {
  const { catalog, signal } = o;
  const now = o.now ?? (() => new Date());
  const progress = o.onProgress ?? (() => undefined);
  const t0 = performance.now();
  progress({ phase: 'detect', message: `reading ${o.source.description}` });
  const found = await findSnapshot(o.source, signal);
  progress({ phase: 'detect', message: `found: ${found.layout}${found.innerName ? `, snapshot ${found.innerName}` : ''}${found.compression ? ` (${found.compression})` : ''}` });
  const listing = await catalog.list(signal);
  const backups = listing.snapshots;

  const verifier = new SnapshotVerifier({ requireTrailer: false });
  const members = new MemberCatcher();
  let bytes = 0;
  async function* plain(): AsyncGenerator<Buffer> {
    for await (const c of mapDecodeErrors(found.snapshot(), found.where)) {
      verifier.update(c);
      members.update(c);
      bytes += c.length;
      yield c;
    }
  }
  const recipients = catalog.keys?.canEncrypt ? [...catalog.keys.recipients] : undefined;
  const startedAt = now();
  const createdAt = found.originalTime ?? startedAt;
  const taken = new Set([...backups.map((b) => b.name), ...listing.incomplete.map((i) => i.name)]);
  let at = createdAt.getTime();
  while (taken.has(formatSnapshotName(new Date(at)))) at++;
  const name = formatSnapshotName(new Date(at));
  const objectKey = layout.snapshotObject(catalog.cluster, name);
  const written: string[] = [];
  const undo = async () => {
    for (const k of written.reverse()) await catalog.store.delete(k).catch(() => undefined);
  };

  let objectSize = 0;
  let objectSha256 = '';
  try {
    if (o.dryRun) {
      for await (const c of plain()) void c;
    } else {
      written.push(objectKey);
      const up = await catalog.store.upload(objectKey, recipients ? sealed(plain(), recipients, (h) => (objectSha256 = h)) : plain(), {
        contentType: 'application/octet-stream',
        metadata: { 'etcd-recover-imported-from': found.tool ?? 'snapshot' },
        ...(signal ? { signal } : {}),
        onProgress: (p) => progress({ phase: 'stream', bytes: p.bytes }),
      });
      objectSize = up.size;
    }
    const report = verifier.finish();
    if (!report.ok) {
      throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `${found.where}${found.innerName ? `: ${found.innerName}` : ''} failed verification: ${describeDefects(report).split('\n')[0]}`, {
        hint: 'nothing was imported; the snapshot is damaged: import another backup',
      });
    }
    const list = members.finish();
    const identity = identify({ ...(o.clusterId !== undefined ? { given: o.clusterId } : {}), members: list, ...(members.problem ? { membersProblem: members.problem } : {}), backups, ...(o.lineage ? { lineage: o.lineage } : {}) });
    if (identity.foreign && !o.forceForeign) throw foreignError(found.where, identity.foreign);
    const tool: ImportTool = found.tool ?? (report.hasTrailer ? 'etcdctl' : 'raw-db');
    const notes = [...found.notes, identity.note];
    if (identity.foreign) notes.push(`imported with --force-foreign: ${identity.foreign}`);
    notes.push(report.hasTrailer ? 'sha256 trailer present and matching: integrity proven end to end' : NO_TRAILER_NOTE);
    const base: ImportResult = {
      dryRun: Boolean(o.dryRun),
      source: found.where,
      layout: found.layout,
      tool,
      ...(found.innerName ? { innerName: found.innerName } : {}),
      ...(found.compression ? { compression: found.compression } : {}),
      ...(found.originalTime ? { originalTime: found.originalTime.toISOString() } : {}),
      snapshotBytes: bytes,
      revision: report.revision,
      totalKeys: report.totalKeys,
      userKeys: report.userKeys,
      dbSize: report.totalSize,
      hasTrailer: report.hasTrailer,
      integrityProven: report.hasTrailer,
      clusterId: identity.clusterId,
      clusterIdFrom: identity.from,
      ...(list ? { members: list.names.length ? list.names : list.ids } : {}),
      notes,
      extras: found.extras.map((e) => ({ name: e.name })),
    };
    const same = backups.find((b) => b.sha256 === report.sha256);
    if (o.dryRun || same) {
      await undo();
      return { ...base, ...(same ? { alreadyImportedAs: same.name } : {}) };
    }
    const extras = await storeExtras(catalog, name, found, recipients, written, signal, progress);
    const record = buildRecord({ catalog, name, objectKey, objectSize, objectSha256, recipients, report, identity, found, tool, notes, extras, createdAt: new Date(at), startedAt, t0, now });
    progress({ phase: 'record', message: `uploaded ${objectSize} bytes; writing catalog record ${name}` });
    await catalog.writeRecord(record, signal);
    return { ...base, extras: extras.map(({ name: n, objectKey: k, sha256 }) => ({ name: n, objectKey: k, sha256 })), record };
  } catch (e) {
    await undo();
    throw e;
  }
}

async function* sealed(src: AsyncIterable<Buffer>, recipients: string[], onHash: (hex: string) => void): AsyncGenerator<Buffer> {
  const h = createHash('sha256');
  for await (const c of encryptStream(src, recipients)) {
    h.update(c);
    yield c;
  }
  onHash(h.digest('hex'));
}

async function storeExtras(
  catalog: Catalog,
  name: string,
  found: Found,
  recipients: string[] | undefined,
  written: string[],
  signal: AbortSignal | undefined,
  progress: (p: ImportProgress) => void,
): Promise<NonNullable<RecordProvenance['extras']>> {
  const out: NonNullable<RecordProvenance['extras']> = [];
  for (const x of found.extras) {
    const key = extraKey(catalog.cluster, name, x.name);
    const hash = createHash('sha256');
    async function* bytes(): AsyncGenerator<Buffer> {
      for await (const c of x.open(signal)) {
        hash.update(c);
        yield Buffer.from(c);
      }
    }
    written.push(key);
    await catalog.store.upload(key, recipients ? encryptStream(bytes(), recipients) : bytes(), { contentType: 'application/octet-stream', ...(signal ? { signal } : {}) });
    out.push({ name: x.name, objectKey: key, sha256: hash.digest('hex'), ...(recipients ? { encrypted: true } : {}) });
    progress({ phase: 'record', message: `kept ${x.name} beside it${recipients ? ' (encrypted)' : ''}` });
  }
  return out;
}
