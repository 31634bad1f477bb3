import { Args, Flags } from '@oclif/core';
import {
  EtcdRecoverError,
  failureSummary,
  integrityProven,
  verifyInBucket,
  verifyLocalFile,
  describeDefects,
  type SnapshotReport,
} from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';
import { bytes, table } from '../../render.js';

interface VerifyRow {
  name: string;
  ok: boolean;
  revision: number;
  /** Live keys: `etcdutl snapshot status` TotalKey of etcd 3.6 and later. */
  totalKeys: number;
  /** Every entry of every bucket: `etcdutl snapshot status` TotalKey of etcd 3.5. */
  totalEntries: number;
  totalSize: number;
  /** The storage version in the snapshot's bbolt meta ("3.6.0"); absent in snapshots of etcd 3.5. */
  storageVersion?: string;
  /** bbolt page size from the meta page. */
  pageSize: number;
  hash: number;
  sha256: string;
  /** etcd's sha256 trailer is present (a raw member/snap/db copy has none). */
  hasTrailer: boolean;
  /** Intact and proven end to end by the trailer; false for a raw copy even when its structure is sound. */
  integrityProven: boolean;
  problems: string[];
  /** Not failures: e.g. "integrity not proven" for a file without trailer. */
  warnings: string[];
  report: SnapshotReport;
}

const NOT_PROVEN = 'integrity not proven: no sha256 trailer (a raw database copy); the structure is sound, but damage inside a value cannot be detected — pass --require-trailer to make this an error';

export default class BackupVerify extends BaseCommand {
  static override summary = 'Prove a snapshot is intact, natively: sha256 trailer, bbolt structure, keyspace hash.';
  static override description = `Reads the snapshot once (streamed from the bucket, bounded memory; or a local file) without any etcd binary: checks etcd's sha256 trailer, both bbolt meta pages, page bounds, the freelist and a B+tree walk of every bucket, and reports revision, hash, total keys and size exactly as \`etcdutl snapshot status\` does: totalKeys is etcdutl 3.6/3.7's TotalKey (live keys), totalEntries etcdutl 3.5's (every entry of every bucket). In the bucket, the result is compared with the catalog record and recorded in it.
A local file must be whole bbolt pages (a raw member/snap/db copy) or whole pages plus etcd's 32-byte sha256 trailer (etcdctl snapshot save); any other length is refused as truncated. A file without a trailer is reported "OK, integrity not proven" (integrityProven: false in json/yaml); --require-trailer makes that an error.
Exit code 0 when every snapshot checked is intact, 3 when any is corrupt or truncated (docs/exit-codes.md).`;
  static override examples = [
    { description: 'Verify the newest backup in the bucket', command: '<%= config.bin %> backup verify' },
    { description: 'Verify a named backup', command: '<%= config.bin %> backup verify full-20261121T073355123Z-r1234' },
    { description: 'Verify every backup, as a CI job would', command: '<%= config.bin %> backup verify --all -o json' },
    { description: 'Verify a local snapshot file (e.g. from etcdctl snapshot save)', command: '<%= config.bin %> backup verify --file /var/lib/etcd-backup/snapshot.db' },
    { description: 'Insist on an end-to-end proof: a raw member/snap/db copy (no trailer) fails with exit 3', command: '<%= config.bin %> backup verify --file ./snapshot.db --require-trailer' },
  ];
  static override args = {
    name: Args.string({ description: 'Backup name (default: the newest).' }),
  };
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    file: Flags.string({ description: 'Verify a local snapshot file instead of a backup in the bucket.', exclusive: ['all'] }),
    all: Flags.boolean({ description: 'Verify every backup of the cluster.', exclusive: ['latest'] }),
    latest: Flags.integer({ description: 'Verify the N newest backups (what the scheduled verification job does).', min: 1 }),
    'require-trailer': Flags.boolean({ description: 'With --file: fail (exit 3) when the sha256 trailer is missing (a raw member/snap/db copy has none): integrity not proven.' }),
  };

  async run(): Promise<{ ok: boolean; results: VerifyRow[] }> {
    const { args, flags } = await this.parse(BackupVerify);
    this.setup(flags);
    this.reportAs('verify');
    const results: VerifyRow[] = [];
    if (flags.file) {
      const report = await verifyLocalFile(flags.file, { requireTrailer: flags['require-trailer'] });
      results.push(row(flags.file, report, report.ok ? [] : [describeDefects(report)]));
    } else {
      const target = await this.openTarget(flags);
      const catalog = target.catalog();
      let names: string[];
      if (args.name) names = [args.name];
      else {
        const { snapshots } = await catalog.list(this.abort.signal);
        if (!snapshots.length) {
          throw new EtcdRecoverError('SNAPSHOT_NOT_FOUND', `no backups for cluster ${target.cluster} in ${catalog.store.description}`, {
            hint: 'create one with `kubectl etcd-recover backup create`',
          });
        }
        names = flags.all ? snapshots.map((s) => s.name) : snapshots.slice(0, flags.latest ?? 1).map((s) => s.name);
      }
      for (const name of names) {
        this.progress.step(`verifying ${name}`);
        const v = await verifyInBucket(catalog, name, {
          signal: this.abort.signal,
          onProgress: (b, total) => this.progress.transfer(`reading ${name}`, b, total),
        });
        results.push(row(name, v.report, v.ok ? [] : [failureSummary(v)]));
      }
    }
    const ok = results.every((r) => r.ok);
    this.job!.ok = ok;
    this.job!.message = ok
      ? `verified ${results.length} backup(s): ${results.map((r) => r.name).join(', ')}`
      : `verification FAILED for ${results.filter((r) => !r.ok).map((r) => `${r.name} (${r.problems.join('; ')})`).join(', ')}`;
    this.render({ ok, results: results.map(({ report, ...r }) => ({ ...r, defects: report.defects })) }, () =>
      [
        table(results, [
          { header: 'Snapshot', get: (r) => r.name },
          { header: 'Result', get: (r) => (!r.ok ? 'CORRUPT' : r.integrityProven ? 'OK' : 'OK, integrity not proven') },
          { header: 'Revision', get: (r) => r.revision, align: 'right' },
          { header: 'Keys', get: (r) => r.totalKeys, align: 'right' },
          { header: 'Size', get: (r) => bytes(r.totalSize), align: 'right' },
          { header: 'Hash', get: (r) => r.hash.toString(16).padStart(8, '0') },
        ]),
        ...results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.problems.join('; ')}`),
        ...results.flatMap((r) => r.warnings.map((w) => `${r.name}: ${w}`)),
      ].join('\n'),
    );
    if (!ok) {
      const bad = results.filter((r) => !r.ok);
      const err = new EtcdRecoverError('SNAPSHOT_CORRUPT', `${bad.length} of ${results.length} snapshot(s) failed verification: ${bad.map((r) => `${r.name}: ${r.problems.join('; ')}`).join(' | ')}`, {
        hint: 'do not restore from it; choose another backup (`backup list`) or take a fresh one',
      });
      process.exitCode = err.exitCode;
      if (this.format === 'table' || this.format === 'wide') process.stderr.write(`error: ${err.message}\n  next: ${err.hint}\n`);
    }
    return { ok, results };
  }
}

function row(name: string, report: SnapshotReport, problems: string[]): VerifyRow {
  const ok = report.ok && problems.length === 0;
  return {
    name,
    ok,
    revision: report.revision,
    totalKeys: report.totalKeys,
    totalEntries: report.totalEntries,
    totalSize: report.totalSize,
    ...(report.version ? { storageVersion: report.version } : {}),
    pageSize: report.pageSize,
    hash: report.hash,
    sha256: report.sha256,
    hasTrailer: report.hasTrailer,
    integrityProven: ok && integrityProven(report),
    problems,
    warnings: ok && !report.hasTrailer ? [NOT_PROVEN] : [],
    report,
  };
}
