/** The catalog record of an imported backup: an ordinary record, with its provenance. */
import { toolVersion } from '../../version.js';
import { ENCRYPTED_RECORD_FORMAT, PLAIN_RECORD_FORMAT, type Catalog, type RecordProvenance, type SnapshotRecord } from '../catalog.js';
import type { SnapshotReport } from '../verifier/index.js';
import type { ImportTool } from './detect.js';
import type { ClusterIdentity } from './identity.js';
import type { Found } from './layouts.js';

export function buildRecord(a: {
  catalog: Catalog;
  name: string;
  objectKey: string;
  objectSize: number;
  objectSha256: string;
  recipients: string[] | undefined;
  report: SnapshotReport;
  identity: ClusterIdentity;
  found: Found;
  tool: ImportTool;
  notes: string[];
  extras: NonNullable<RecordProvenance['extras']>;
  createdAt: Date;
  startedAt: Date;
  t0: number;
  now: () => Date;
}): SnapshotRecord {
  const { report, found } = a;
  const completedAt = a.now();
  const provenance: RecordProvenance = {
    tool: a.tool,
    originalName: found.originalName,
    ...(found.innerName ? { innerName: found.innerName } : {}),
    ...(found.originalTime ? { originalTime: found.originalTime.toISOString() } : {}),
    ...(found.compression ? { compression: found.compression } : {}),
    notes: a.notes,
    ...(a.extras.length ? { extras: a.extras } : {}),
    source: found.where,
    importedAt: a.startedAt.toISOString(),
  };
  return {
    formatVersion: a.recipients ? ENCRYPTED_RECORD_FORMAT : PLAIN_RECORD_FORMAT,
    name: a.name,
    cluster: a.catalog.cluster,
    clusterId: a.identity.clusterId,
    sourceMember: { id: '', endpoint: `import:${found.where}` },
    revision: report.revision,
    raftIndex: 0,
    raftTerm: 0,
    etcdVersion: found.etcdVersion ?? '',
    ...(report.version ? { storageVersion: report.version } : {}),
    dbSize: report.totalSize,
    objectSize: a.objectSize,
    ...(a.recipients ? { encryption: { format: 'age' as const, recipients: a.recipients, objectSha256: a.objectSha256 } } : {}),
    totalKeys: report.totalKeys,
    userKeys: report.userKeys,
    ...(report.compactionPending ? { compactionPending: true } : {}),
    hash: report.hash,
    sha256: report.sha256,
    createdAt: a.createdAt.toISOString(),
    completedAt: completedAt.toISOString(),
    durationMs: Math.round(performance.now() - a.t0),
    toolVersion: toolVersion(),
    objectKey: a.objectKey,
    verification: { ok: true, at: completedAt.toISOString(), by: 'create', sha256: report.sha256, hash: report.hash, revision: report.revision, totalKeys: report.totalKeys, defects: [] },
    ...(report.hasTrailer ? {} : { hasTrailer: false }),
    labels: { 'imported-from': a.tool },
    provenance,
  };
}
