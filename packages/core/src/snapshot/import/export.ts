/**
 * `backup export`: a backup as a plain etcd snapshot file that bare `etcdutl snapshot restore`
 * takes — decrypted, with etcd's sha256 trailer as it was streamed — verified on the way (the
 * bbolt walk, the trailer, the record's sha256). Written to FILE.part and renamed only when
 * proven; an existing FILE is never overwritten.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import { EtcdRecoverError } from '../../errors.js';
import type { Catalog, SnapshotRecord } from '../catalog.js';
import { streamVerified } from '../fetch-verified.js';

export interface ExportResult {
  name: string;
  file: string;
  bytes: number;
  revision: number;
  totalKeys: number;
  sha256: string;
  hasTrailer: boolean;
  /** How to restore it with bare etcdutl. */
  restoreWith: string;
}

export async function exportBackup(catalog: Catalog, name: string, file: string, o: { signal?: AbortSignal; onProgress?: (bytes: number) => void } = {}): Promise<ExportResult> {
  const part = `${file}.part`;
  if (existsSync(file)) throw new EtcdRecoverError('PRECONDITION', `${file} exists: refusing to overwrite it`, { hint: 'name a new file, or move the old one away' });
  if (existsSync(part)) throw new EtcdRecoverError('PRECONDITION', `${part} exists (another export running, or one interrupted): refusing to overwrite it`, { hint: `remove ${part} if no export is running` });
  const record: SnapshotRecord = await catalog.get(name, o.signal);
  const fail = (why: string) =>
    new EtcdRecoverError('SNAPSHOT_CORRUPT', `backup ${name} ${why}; nothing was written`, { hint: 'choose another backup (`backup list`), or re-verify this one with `backup verify`' });
  const { bytes, report } = await streamVerified(catalog, record, part, {
    flag: 'wx',
    sync: true,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onProgress ? { onBytes: o.onProgress } : {}),
    fail: (why) => fail(why.split('\n')[0]!),
  });
  if (existsSync(file)) {
    rmSync(part, { force: true });
    throw fail(`could not be exported: ${file} appeared meanwhile`);
  }
  renameSync(part, file);
  return {
    name,
    file,
    bytes,
    revision: report.revision,
    totalKeys: report.totalKeys,
    sha256: report.sha256,
    hasTrailer: report.hasTrailer,
    restoreWith: report.hasTrailer ? `etcdutl snapshot restore ${file} --data-dir …` : `etcdutl snapshot restore ${file} --skip-hash-check --data-dir … (a raw copy without trailer: etcdutl needs --skip-hash-check)`,
  };
}
