import { createHash } from 'node:crypto';
import { EtcdRecoverError } from '../errors.js';
import type { EtcdGateway, MemberStatus } from '../etcd/etcd-gateway.js';
import { layout } from '../layout.js';
import { toolVersion } from '../version.js';
import { Catalog, ENCRYPTED_RECORD_FORMAT, PLAIN_RECORD_FORMAT, isTrusted, keysOf, newestFirst, type SnapshotRecord, type SuspectMark } from './catalog.js';
import { chooseSnapshotSource, type MemberCandidate } from './member-selection.js';
import { encryptStream } from './encryption.js';
import { storeCompanions, type CompanionSource, type RecordCompanions } from './companions.js';
import { formatSnapshotName } from './snapshot-name.js';
import { SnapshotVerifier, describeDefects } from './verifier/index.js';

export interface CaptureProgress {
  phase: 'select' | 'stream' | 'record';
  bytes?: number;
  totalBytes?: number;
  message?: string;
}

export interface CaptureOptions {
  gateway: EtcdGateway;
  catalog: Catalog;
  /** Endpoint or member ID (hex) to snapshot from; default: chosen by chooseSnapshotSource. */
  member?: string;
  /** Allow members without a leader (quorum lost). Default false. */
  allowNoLeader?: boolean;
  /** Names of members by ID, for the record. */
  memberNames?: Record<string, string>;
  labels?: Record<string, string>;
  signal?: AbortSignal;
  onProgress?: (p: CaptureProgress) => void;
  now?: () => Date;
  /** When the new backup counts as suspect (default SUSPECT_THRESHOLDS). */
  suspectThresholds?: SuspectThresholds;
  /** Companion resources to save beside the snapshot (always encrypted: refused before anything is streamed without recipients). */
  companions?: CompanionSource;
}

/**
 * When a new backup is suspect: its keys fall below `keysRatio` of the newest previous trusted
 * backup's (which had at least `minBaselineKeys`), or its DB size below `dbSizeRatio` of the
 * baseline's (which was at least `minBaselineDbSize` bytes). The floors keep small clusters
 * (tests, fresh installs) from ever being judged; DB size alone needs a steep fall because a
 * defragmentation after compaction legitimately shrinks the file.
 */
export const SUSPECT_THRESHOLDS = {
  keysRatio: 0.5,
  minBaselineKeys: 1000,
  dbSizeRatio: 0.25,
  minBaselineDbSize: 64 * 1024 * 1024,
} as const;

export type SuspectThresholds = { [K in keyof typeof SUSPECT_THRESHOLDS]: number };

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
const pct = (a: number, b: number) => `${Math.floor((100 * a) / b)}%`;

/**
 * Pure: compares a new backup with the newest trusted one among `previous` (any order) and
 * returns the suspect mark, or undefined when it looks sound (or there is nothing to compare with).
 * The backup of a restored cluster names the backup it was restored from (`restoredFrom`): that one
 * is its baseline, since a restore to an older, smaller state is what was asked for.
 */
export function suspectMark(
  candidate: Pick<SnapshotRecord, 'userKeys' | 'totalKeys' | 'dbSize'>,
  previous: readonly SnapshotRecord[],
  t: SuspectThresholds = SUSPECT_THRESHOLDS,
  restoredFrom?: string,
): SuspectMark | undefined {
  const sorted = [...previous].sort(newestFirst);
  const baseline = (restoredFrom ? sorted.find((s) => s.name === restoredFrom) : undefined) ?? sorted.find(isTrusted);
  if (!baseline) return undefined;
  const reasons: string[] = [];
  const was = keysOf(baseline);
  const now = keysOf(candidate);
  if (was >= t.minBaselineKeys && now < was * t.keysRatio) {
    reasons.push(`keys fell from ${was} (backup ${baseline.name}) to ${now} (${pct(now, was)}, below ${t.keysRatio * 100}%)`);
  }
  if (baseline.dbSize >= t.minBaselineDbSize && candidate.dbSize < baseline.dbSize * t.dbSizeRatio) {
    reasons.push(`DB size fell from ${mib(baseline.dbSize)} (backup ${baseline.name}) to ${mib(candidate.dbSize)} (${pct(candidate.dbSize, baseline.dbSize)}, below ${t.dbSizeRatio * 100}%)`);
  }
  if (!reasons.length) return undefined;
  return { reasons, baseline: { name: baseline.name, revision: baseline.revision, userKeys: was, dbSize: baseline.dbSize } };
}

export async function collectStatuses(gateway: EtcdGateway, signal?: AbortSignal): Promise<MemberCandidate[]> {
  return Promise.all(
    gateway.endpoints.map(async (endpoint) => {
      try {
        return { endpoint, status: await gateway.status(endpoint, signal) };
      } catch (e) {
        return { endpoint, error: (e as Error).message, cause: e };
      }
    }),
  );
}

/**
 * Streams a snapshot from one healthy, caught-up member straight into the
 * object store (multipart, no temp file), verifying it in the same pass:
 * sha256 against etcd's trailer plus the native bbolt walk. Memory stays
 * bounded by the upload's part buffers. The catalog record is written last,
 * so an interrupted upload is never listed as a backup; a snapshot that fails
 * verification is deleted and reported. A snapshot whose keyspace collapsed
 * against the newest trusted backup is kept but marked suspect (suspectMark).
 */
export async function captureSnapshot(opts: CaptureOptions): Promise<SnapshotRecord> {
  const { gateway, catalog, signal } = opts;
  const now = opts.now ?? (() => new Date());
  const progress = opts.onProgress ?? (() => undefined);

  progress({ phase: 'select', message: `asking ${gateway.endpoints.length} member(s) for status` });
  const candidates = await collectStatuses(gateway, signal);
  const choice = chooseSnapshotSource(candidates, {
    ...(opts.member ? { prefer: opts.member } : {}),
    ...(opts.allowNoLeader ? { allowNoLeader: true } : {}),
  });
  if (!choice) {
    // Every member refused our certificates (or we theirs): that is the one clear cause, not "unhealthy".
    const tls = candidates.map((c) => c.cause).filter((e): e is EtcdRecoverError => e instanceof EtcdRecoverError && e.code === 'ETCD_TLS');
    if (tls.length && tls.length === candidates.length) throw tls[0]!;
    const why = candidates.map((c) => `${c.endpoint}: ${c.error ?? 'unhealthy'}`).join('; ');
    throw new EtcdRecoverError('ETCD_UNREACHABLE', `no healthy etcd member to snapshot (${why})`, {
      hint: 'check the members with `kubectl etcd-recover status`; if quorum is lost, restore with `kubectl etcd-recover quorum`',
    });
  }
  if (opts.member && choice.reason !== 'requested') {
    const s = choice.skipped.find((x) => x.endpoint === opts.member);
    throw new EtcdRecoverError('PRECONDITION', `member ${opts.member} cannot be snapshotted: ${s?.reason ?? 'not one of the endpoints'}`);
  }
  const source: MemberStatus = choice.chosen;
  if (opts.companions && !catalog.keys?.canEncrypt) {
    throw new EtcdRecoverError('ENCRYPTION_KEY', 'companion resources are declared, but backups are not encrypted: companions are never stored in the clear', {
      hint: 'configure backup encryption (backup.encryption on the component, or --age-recipients-file), or remove the companions',
    });
  }
  // The backups so far, read before anything is written: the new one is judged against them.
  const previous = (await catalog.list(signal)).snapshots;
  progress({ phase: 'select', message: `snapshotting ${source.endpoint} (${choice.reason}, revision ${source.revision})` });

  const started = now();
  const t0 = performance.now();
  const stream = gateway.snapshot(source.endpoint, signal);
  const iterator = stream[Symbol.asyncIterator]();
  // Pull the first chunk so that a member that cannot stream fails before anything is written.
  const first = await iterator.next();
  const totalBytes = await stream.expectedBytes;
  const name = formatSnapshotName(started);
  const objectKey = layout.snapshotObject(catalog.cluster, name);

  const verifier = new SnapshotVerifier({ requireTrailer: true });
  async function* body(): AsyncGenerator<Uint8Array> {
    if (!first.done) {
      verifier.update(first.value);
      yield first.value;
    }
    for (;;) {
      const n = await iterator.next();
      if (n.done) return;
      verifier.update(n.value);
      yield n.value;
    }
  }

  // Encrypted for the catalog's recipients when it has any: the verifier above sees the plaintext,
  // the bucket only the age file (whose own sha256 goes in the record, to prove copies without a key).
  const recipients = catalog.keys?.canEncrypt ? [...catalog.keys.recipients] : undefined;
  let objectSha256 = '';
  async function* sealed(): AsyncGenerator<Uint8Array> {
    const objectHash = createHash('sha256');
    for await (const c of encryptStream(body(), recipients!)) {
      objectHash.update(c);
      yield c;
    }
    objectSha256 = objectHash.digest('hex');
  }
  let uploaded: { size: number };
  try {
    uploaded = await catalog.store.upload(objectKey, recipients ? sealed() : body(), {
      contentType: 'application/octet-stream',
      metadata: { 'etcd-recover-cluster-id': source.clusterId, 'etcd-recover-member-id': source.memberId },
      ...(signal ? { signal } : {}),
      onProgress: (p) => progress({ phase: 'stream', bytes: p.bytes, ...(totalBytes ? { totalBytes } : {}) }),
    });
  } catch (e) {
    await catalog.store.delete(objectKey).catch(() => undefined);
    throw e;
  }
  const report = verifier.finish();
  if (!report.ok) {
    await catalog.store.delete(objectKey).catch(() => undefined);
    throw new EtcdRecoverError('SNAPSHOT_CORRUPT', `the snapshot streamed from ${source.endpoint} failed verification: ${describeDefects(report)}`, {
      hint: 'retry, or snapshot another member with --member',
    });
  }
  // The companions go in before the record: a listed backup always has what it was declared with.
  let companions: RecordCompanions | undefined;
  if (opts.companions) {
    const got = await opts.companions();
    companions = await storeCompanions(catalog, name, { apiVersion: 'etcd-recover.io/v1', kind: 'CompanionBundle', capturedAt: now().toISOString(), ...got }, signal);
    progress({ phase: 'record', message: `saved ${companions.items.length} companion resource(s)${companions.missing.length ? `; MISSING: ${companions.missing.map((m) => `${m.kind} ${m.name}`).join(', ')}` : ''}` });
  }
  progress({ phase: 'record', message: `uploaded ${uploaded.size} bytes; writing catalog record` });
  const suspect = suspectMark({ userKeys: report.userKeys, totalKeys: report.totalKeys, dbSize: report.totalSize }, previous, opts.suspectThresholds, opts.labels?.['restored-from']);
  if (suspect) progress({ phase: 'record', message: `SUSPECT backup: ${suspect.reasons.join('; ')}` });
  const completedAt = now();
  const record: SnapshotRecord = {
    formatVersion: recipients ? ENCRYPTED_RECORD_FORMAT : PLAIN_RECORD_FORMAT,
    name,
    cluster: catalog.cluster,
    clusterId: source.clusterId,
    sourceMember: {
      id: source.memberId,
      endpoint: source.endpoint,
      ...(opts.memberNames?.[source.memberId] ? { name: opts.memberNames[source.memberId] } : {}),
    },
    revision: report.revision,
    raftIndex: source.raftIndex,
    raftTerm: source.raftTerm,
    etcdVersion: source.version,
    ...(report.version ? { storageVersion: report.version } : {}),
    dbSize: report.totalSize,
    objectSize: uploaded.size,
    ...(recipients ? { encryption: { format: 'age' as const, recipients, objectSha256 } } : {}),
    ...(companions ? { companions } : {}),
    totalKeys: report.totalKeys,
    userKeys: report.userKeys,
    ...(report.compactionPending ? { compactionPending: true } : {}),
    ...(report.compactRevision ? { compactRevision: report.compactRevision } : {}),
    hash: report.hash,
    sha256: report.sha256,
    createdAt: started.toISOString(),
    completedAt: completedAt.toISOString(),
    durationMs: Math.round(performance.now() - t0),
    toolVersion: toolVersion(),
    objectKey,
    verification: {
      ok: true,
      at: completedAt.toISOString(),
      by: 'create',
      sha256: report.sha256,
      hash: report.hash,
      revision: report.revision,
      totalKeys: report.totalKeys,
      defects: [],
    },
    ...(opts.labels ? { labels: opts.labels } : {}),
    ...(suspect ? { suspect } : {}),
  };
  await catalog.writeRecord(record, signal);
  return record;
}
