import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { Catalog, type SnapshotRecord, type VerificationResult } from './catalog.js';
import { SnapshotVerifier, describeDefects, verifySnapshotFile, type SnapshotDefect, type SnapshotReport } from './verifier/index.js';

/** etcd's sha256 trailer: 32 bytes after the bbolt pages (etcdctl snapshot save, the stream). */
const TRAILER_BYTES = 32;

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
  const verifier = new SnapshotVerifier({ requireTrailer: true });
  let bytes = 0;
  for await (const chunk of catalog.store.get(layout.snapshotObject(catalog.cluster, name), { borrow: true, ...(opts.signal ? { signal: opts.signal } : {}) })) {
    verifier.update(chunk);
    bytes += chunk.length;
    opts.onProgress?.(bytes, head.size);
  }
  const report = verifier.finish();
  const mismatches = compareWithRecord(record, report);
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
 * Verifies a local file natively and refuses any length that is neither whole pages (a raw
 * bbolt `member/snap/db` copy) nor whole pages plus a complete 32-byte sha256 trailer (what
 * `etcdctl snapshot save` writes): such a file was cut or damaged, even if the pages the meta
 * page points at happen to be intact. The page size is the one the meta page declares.
 */
export async function verifyLocalFile(path: string, opts: { requireTrailer?: boolean } = {}): Promise<SnapshotReport> {
  return withLengthCheck(await verifySnapshotFile(path, { requireTrailer: opts.requireTrailer ?? false }));
}

/** The TRUNCATED defect of a length that is neither pages nor pages + trailer; undefined when the length is sound (or the format unknown). */
export function lengthDefect(report: Pick<SnapshotReport, 'fileSize' | 'pageSize' | 'defects'>): SnapshotDefect | undefined {
  const ps = report.pageSize;
  const n = report.fileSize;
  // No page size (empty, not bbolt, unreadable meta pages): the verifier has already failed the file.
  if (!ps || n === 0 || report.defects.some((d) => d.code === 'EMPTY' || d.code === 'NOT_BBOLT')) return undefined;
  if (n % ps === 0 || (n > TRAILER_BYTES && (n - TRAILER_BYTES) % ps === 0)) return undefined;
  const pages = Math.floor(n / ps);
  return {
    code: 'TRUNCATED',
    page: pages,
    fatal: true,
    reason:
      `file length ${n} bytes is neither whole ${ps}-byte pages (a raw database copy) nor whole pages plus a ${TRAILER_BYTES}-byte sha256 trailer: ` +
      `${pages} pages and ${n - pages * ps} bytes (page size ${ps} from the meta page): the file is truncated or damaged`,
  };
}

/** The report with lengthDefect added (first, fatal) when the length is unsound. */
export function withLengthCheck(report: SnapshotReport): SnapshotReport {
  const d = lengthDefect(report);
  if (!d) return report;
  return { ...report, ok: false, defects: [d, ...report.defects] };
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
