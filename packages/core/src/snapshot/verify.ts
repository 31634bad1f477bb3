import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { Catalog, type SnapshotRecord, type VerificationResult } from './catalog.js';
import { plainSizeEstimate, readSnapshot } from './snapshot-object.js';
import { SnapshotVerifier, describeDefects, verifySnapshotFile, type SnapshotReport } from './verifier/index.js';

export interface BucketVerification {
  record: SnapshotRecord;
  report: SnapshotReport;
  /** Disagreements between the record and what the object holds. */
  mismatches: string[];
  ok: boolean;
}

/**
 * Re-reads a snapshot from the bucket (streamed, bounded memory), verifies it
 * natively and compares it with its catalog record. Records the result in the
 * record unless `record: false`.
 */
export async function verifyInBucket(
  catalog: Catalog,
  name: string,
  opts: { signal?: AbortSignal; record?: boolean; onProgress?: (bytes: number, total: number) => void } = {},
): Promise<BucketVerification> {
  const record = await catalog.get(name, opts.signal);
  const head = await catalog.store.head(layout.snapshotObject(catalog.cluster, name), opts.signal);
  if (!head) {
    throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `backup ${name} has a record but its snapshot object is missing`, {
      hint: 'prune it with `kubectl etcd-recover backup prune`; pick another restore point',
    });
  }
  // A trailer is required, except for a backup imported from a raw bbolt copy (record.hasTrailer
  // false): it never had one, and the record's sha256 (compared below) proves its bytes instead.
  const verifier = new SnapshotVerifier({ requireTrailer: record.hasTrailer !== false });
  let bytes = 0;
  const total = plainSizeEstimate(record, head.size);
  // A ciphertext that fails authentication (or a record and object that disagree) is a failed
  // verification like any other damage, recorded as such; a missing or wrong key is not (it throws).
  let unreadable: string | undefined;
  try {
    for await (const chunk of readSnapshot(catalog, record, { borrow: true, ...(opts.signal ? { signal: opts.signal } : {}) })) {
      verifier.update(chunk);
      bytes += chunk.length;
      opts.onProgress?.(bytes, total);
    }
  } catch (e) {
    if (!(e instanceof EtcdRecoverError && e.code === 'SNAPSHOT_CORRUPT')) throw e;
    unreadable = e.message;
  }
  const report = verifier.finish();
  const mismatches = unreadable ? [unreadable] : compareWithRecord(record, report);
  const ok = report.ok && mismatches.length === 0;
  if (opts.record !== false) {
    const verification: VerificationResult = {
      ok,
      at: new Date().toISOString(),
      by: 'verify',
      sha256: report.sha256,
      hash: report.hash,
      revision: report.revision,
      totalKeys: report.totalKeys,
      defects: [...report.defects.filter((d) => d.fatal).map((d) => (d.page !== undefined ? `page ${d.page}: ` : '') + d.reason), ...mismatches],
    };
    await catalog.writeRecord({ ...record, verification }, opts.signal);
  }
  return { record, report, mismatches, ok };
}

export function compareWithRecord(record: SnapshotRecord, report: SnapshotReport): string[] {
  const out: string[] = [];
  if (!report.ok) return out;
  if (report.sha256 !== record.sha256) out.push(`sha256 ${report.sha256.slice(0, 12)}… differs from the catalog record's ${record.sha256.slice(0, 12)}…`);
  if (report.revision !== record.revision) out.push(`revision ${report.revision} differs from the record's ${record.revision}`);
  if (report.totalKeys !== record.totalKeys) out.push(`total keys ${report.totalKeys} differ from the record's ${record.totalKeys}`);
  if (report.hash !== record.hash) out.push(`hash ${report.hash} differs from the record's ${record.hash}`);
  return out;
}

/**
 * Verifies a local file natively. A length that is neither whole pages (a raw bbolt `member/snap/db`
 * copy) nor whole pages plus the 32-byte trailer is refused by the verifier itself (TRUNCATED).
 */
export async function verifyLocalFile(path: string, opts: { requireTrailer?: boolean } = {}): Promise<SnapshotReport> {
  return verifySnapshotFile(path, { requireTrailer: opts.requireTrailer ?? false });
}

/** True when the bytes were proven end to end by etcd's sha256 trailer (a raw copy has none). */
export function integrityProven(report: Pick<SnapshotReport, 'ok' | 'hasTrailer'>): boolean {
  return report.ok && report.hasTrailer;
}

/** One line summarising why a verification failed. */
export function failureSummary(v: { report: SnapshotReport; mismatches: string[] }): string {
  const parts: string[] = [];
  if (!v.report.ok) parts.push(describeDefects(v.report));
  parts.push(...v.mismatches);
  return parts.join('; ');
}
