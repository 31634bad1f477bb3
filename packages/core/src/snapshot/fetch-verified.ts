import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EtcdRecoverError } from '../errors.js';
import type { Catalog, SnapshotRecord } from './catalog.js';
import { readSnapshot } from './snapshot-object.js';
import { SnapshotVerifier, describeDefects } from './verifier/index.js';

/**
 * Downloads a snapshot from the bucket into a file, verifying it natively in the same pass (bbolt
 * walk, etcd's sha256 trailer) and against its catalog record. Nothing is left behind on failure.
 */
export async function fetchVerifiedSnapshot(
  catalog: Catalog,
  record: SnapshotRecord,
  file: string,
  o: { signal?: AbortSignal; progress?: (m: string) => void } = {},
): Promise<{ bytes: number; revision: number; totalKeys: number }> {
  mkdirSync(dirname(file), { recursive: true });
  const part = `${file}.part`;
  const out = await open(part, 'w');
  // A trailer is required, except for a backup imported from a raw bbolt copy (record.hasTrailer
  // false): safe because the whole file's sha256 must still equal the record's (checked below),
  // taken when it was imported; every other backup stays as strict as ever.
  const verifier = new SnapshotVerifier({ requireTrailer: record.hasTrailer !== false });
  let bytes = 0;
  try {
    // Borrowed chunks: each is verified and fully written before the next is pulled.
    for await (const chunk of readSnapshot(catalog, record, {
      ...(o.signal ? { signal: o.signal } : {}),
      borrow: true,
      onRetry: (r) => o.progress?.(`object store hiccup at byte ${r.offset} (${r.error}); resuming, attempt ${r.attempt}`),
    })) {
      verifier.update(chunk);
      bytes += chunk.length;
      for (let done = 0; done < chunk.length; ) done += (await out.write(chunk, done, chunk.length - done)).bytesWritten;
    }
    await out.close();
  } catch (e) {
    await out.close().catch(() => undefined);
    rmSync(part, { force: true });
    throw e;
  }
  const report = verifier.finish();
  const corrupt = (why: string) => {
    rmSync(part, { force: true });
    return new EtcdRecoverError('SNAPSHOT_CORRUPT', `restore point ${record.name} ${why}`, { hint: 'nothing was changed; choose another backup with --snapshot' });
  };
  if (!report.ok) throw corrupt(`is corrupt: ${describeDefects(report)}`);
  if (report.sha256 !== record.sha256) throw corrupt(`does not match its catalog record (sha256 ${report.sha256.slice(0, 12)}… vs ${record.sha256.slice(0, 12)}…)`);
  renameSync(part, file);
  return { bytes, revision: report.revision, totalKeys: report.totalKeys };
}
