import { Args, Flags } from '@oclif/core';
import { drillRestore, type DrillReport } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';
import { describeStep } from '../../plan-view.js';
import { duration } from '../../render.js';

export default class BackupDrill extends BaseCommand {
  static override summary = 'Prove a backup restores: restore it into a throwaway etcd cluster on this machine and check it.';
  static override description = `What a CI pipeline runs to prove its backups are good, not just intact. The backup is fetched from the bucket and verified natively, every member of a temporary cluster of real etcd processes (loopback, a temp folder) is restored from it with etcdutl exactly as \`quorum\` would, the members are started, and the result is checked: a healthy quorum, the revision above the snapshot's, the snapshot's key count, and identical HashKV on every member. Then it is torn down. The bucket is only read.
The local etcd must be able to restore the backup: one from a newer etcd minor is refused (etcd cannot downgrade a data dir), a different patch level warns; --require-same-version refuses any other release.
Needs etcd, etcdctl and etcdutl (ETCD_BIN_DIR or PATH). Exit 0 when the backup restores; 3 corrupt; 4 not found; 10 the restore failed; 14 the local etcd cannot restore it (version).`;
  static override examples = [
    { description: 'Drill the newest verified backup of the sandbox', command: '<%= config.bin %> backup drill' },
    { description: 'Prove a point in time restores (continuous archiving): the keyspace at revision 48212', command: '<%= config.bin %> backup drill --to-revision 48212' },
    { description: 'In CI, against the production bucket, one named backup', command: '<%= config.bin %> backup drill full-20261121T073355123Z --bucket etcd-backups --s3-endpoint https://minio.example:9000 --cluster prod-eu1 -o json' },
  ];
  static override args = { name: Args.string({ description: 'Backup name (default: the newest verified).' }) };
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    members: Flags.integer({ description: 'Members of the throwaway cluster.', default: 3, min: 1, max: 7 }),
    keep: Flags.boolean({ description: 'Keep the throwaway cluster\'s folder for inspection.' }),
    'require-same-version': Flags.boolean({ description: 'Refuse unless the local etcd is the release that took the backup (any difference in major.minor.patch refuses).' }),
    timeout: Flags.integer({ description: 'Seconds to wait for the restored members to become healthy.', default: 60, min: 5 }),
    'to-revision': Flags.integer({ description: 'Drill a point in time: the keyspace at this revision, rebuilt from the archive (as `quorum --to-revision`).', min: 1, exclusive: ['to-time'] }),
    'to-time': Flags.string({ description: 'Drill a point in time: the newest revision archived at or before this time (RFC 3339).', exclusive: ['to-revision'] }),
    tls: Flags.boolean({
      description: 'Run the throwaway cluster with TLS (a throwaway CA; needs openssl). Default: TLS when the backup was taken over TLS; --no-tls for plaintext.',
      allowNo: true,
    }),
  };

  async run(): Promise<DrillReport> {
    const { args, flags } = await this.parse(BackupDrill);
    this.setup(flags);
    this.reportAs('drill');
    const catalog = (await this.openTarget(flags)).catalog();
    const report = await drillRestore({
      catalog,
      ...(args.name ? { name: args.name } : {}),
      ...(flags['to-revision'] !== undefined ? { pointInTime: { toRevision: flags['to-revision'] } } : flags['to-time'] ? { pointInTime: { toTime: flags['to-time'] } } : {}),
      members: flags.members,
      keep: flags.keep,
      ...(flags['require-same-version'] ? { requireSameVersion: true } : {}),
      healthyTimeoutMs: flags.timeout * 1000,
      ...(flags.tls !== undefined ? { tls: flags.tls } : {}),
      signal: this.abort.signal,
      onStep: (e) => this.progress.step(describeStep(e)),
      onMessage: (m) => this.progress.step(`      ${m}`),
    });
    this.job!.message = `backup ${report.backup} restores: ${report.members.length} members healthy, revision ${report.snapshotRevision} → ${report.revisionAfter}, ${report.keys} keys, identical HashKV`;
    this.job!.details = { backup: report.backup };
    this.render(report, () =>
      [
        `${report.pointInTime ? `revision ${report.pointInTime.revision} (chain ${report.pointInTime.chain}: backup ${report.pointInTime.baseSnapshot} + ${report.pointInTime.replayed} revisions replayed in ${report.pointInTime.seconds.toFixed(1)} s) ` : ''}backup ${report.backup} restores: ${report.members.length} members healthy in ${duration(report.rtoMs)}${report.tls ? ' (over TLS)' : ''}`,
        `  revision ${report.snapshotRevision} → ${report.revisionAfter}, ${report.keys} keys, identical keyspace on every member (hashKV ${report.members[0]?.hashKV})`,
        ...(report.versions ? [`  etcd ${report.versions.snapshot.version ?? 'unknown'} (snapshot) → ${report.versions.target.version ?? 'unknown'} (local)`] : []),
        ...(report.warnings ?? []).map((w) => `  warning: ${w}`),
      ].join('\n'),
    );
    return report;
  }
}
