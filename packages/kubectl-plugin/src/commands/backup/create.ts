import { Flags } from '@oclif/core';
import { EtcdRecoverError, captureSnapshot, type SnapshotRecord } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';
import { bytes, duration, table } from '../../render.js';

export default class BackupCreate extends BaseCommand {
  static override summary = 'Stream a snapshot from a healthy member into the backup bucket, verified on the way.';
  static override description = `Picks a caught-up follower (the leader only when no follower qualifies), streams its snapshot straight into an S3 multipart upload (no temp file, bounded memory), checks etcd's sha256 trailer and walks the bbolt file natively in the same pass, then writes the catalog record. A snapshot that fails verification is deleted and the command fails; an interrupted upload is never listed as a backup.`;
  static override examples = [
    { description: 'Back up the local sandbox', command: '<%= config.bin %> backup create' },
    {
      description: 'Back up members addressed directly into an S3-compatible bucket',
      command: '<%= config.bin %> backup create --endpoints https://10.0.0.5:2379 --cacert ca.crt --cert client.crt --key client.key --bucket etcd-backups --s3-endpoint https://minio.example:9000 --cluster prod-eu1',
    },
    { description: 'Snapshot one particular member and print the record as JSON', command: '<%= config.bin %> backup create --member http://127.0.0.1:2379 -o json' },
    { description: 'On Kubernetes: a Job of the declared backup CronJob does it in the cluster', command: '<%= config.bin %> backup create -n hcp-demo' },
  ];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    member: Flags.string({ description: 'Member to snapshot (client URL or hex member ID); default: chosen automatically.' }),
    label: Flags.string({ description: 'Label KEY=VALUE recorded with the backup (repeatable).', multiple: true }),
    'allow-no-leader': Flags.boolean({ description: 'Snapshot a member that sees no leader (quorum lost: save what a survivor holds).' }),
  };

  async run(): Promise<SnapshotRecord> {
    const { flags } = await this.parse(BackupCreate);
    this.setup(flags);
    const target = await this.openTarget(flags);
    const catalog = target.catalog();
    await catalog.store.probe(this.abort.signal);
    if (target.kind === 'kubernetes') {
      // In the cluster, by a Job of the declared backup CronJob: etcd is reachable there, and no snapshot
      // data passes through this machine.
      const { runJobFromCronJob, requirePermissions } = await import('@etcd-recover/core/kubernetes');
      const ns = target.kube!.namespace;
      await requirePermissions(target.kube!.kc, 'backup create', [
        { verb: 'get', resource: 'cronjobs', group: 'batch', namespace: ns, name: `${target.contract!.cluster}-backup` },
        { verb: 'create', resource: 'jobs', group: 'batch', namespace: ns },
        { verb: 'get', resource: 'jobs', group: 'batch', namespace: ns },
      ]);
      const before = new Set((await catalog.list(this.abort.signal)).snapshots.map((s) => s.name));
      const args = ['backup', 'create', '--quiet', ...(flags.member ? ['--member', flags.member] : []), ...(flags['allow-no-leader'] ? ['--allow-no-leader'] : []), ...(flags.label ?? ['reason=manual']).flatMap((l) => ['--label', l])];
      this.progress.step(`running a backup Job from cronjob ${target.kube!.namespace}/${target.contract!.cluster}-backup`);
      const r = await runJobFromCronJob(target.kube!.kc, target.contract!, `${target.contract!.cluster}-backup`, args, 600_000, this.abort.signal);
      if (!r.succeeded) {
        throw new EtcdRecoverError('STEP_FAILED', `backup job ${target.kube!.namespace}/${r.job} failed${r.cause ? `: ${r.cause}` : ''}`, { hint: `kubectl -n ${target.kube!.namespace} logs job/${r.job}` });
      }
      const record = (await catalog.list(this.abort.signal)).snapshots.find((s) => !before.has(s.name));
      if (!record) throw new EtcdRecoverError('INTERNAL', `backup job ${r.job} succeeded but no new backup is in ${catalog.store.description}`);
      this.render(record, () => describeRecord(record));
      return record;
    }
    const labels = Object.fromEntries((flags.label ?? []).map((l) => {
      const i = l.indexOf('=');
      return i < 0 ? [l, ''] : [l.slice(0, i), l.slice(i + 1)];
    }));
    const record = await captureSnapshot({
      ...(await target.companionSource().then((c) => (c ? { companions: c } : {}))),
      gateway: target.gateway(),
      catalog,
      ...(flags.member ? { member: flags.member } : {}),
      ...(flags.label ? { labels } : {}),
      ...(flags['allow-no-leader'] ? { allowNoLeader: true } : {}),
      signal: this.abort.signal,
      onProgress: (p) => {
        if (p.phase === 'stream') this.progress.transfer('uploading snapshot', p.bytes ?? 0, p.totalBytes);
        else if (p.message) this.progress.step(p.message);
      },
    });
    this.render(record, () => describeRecord(record));
    return record;
  }
}

function describeRecord(record: SnapshotRecord): string {
  return table([record], [
        { header: 'Name', get: (r) => r.name },
        { header: 'Revision', get: (r) => r.revision, align: 'right' },
        { header: 'Keys', get: (r) => r.totalKeys, align: 'right' },
        { header: 'Size', get: (r) => bytes(r.dbSize), align: 'right' },
        { header: 'Member', get: (r) => r.sourceMember.name ?? r.sourceMember.endpoint },
        { header: 'Took', get: (r) => duration(r.durationMs) },
        { header: 'Verified', get: () => 'yes' },
      ]);
}
