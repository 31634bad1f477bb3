import { Flags } from '@oclif/core';
import { EtcdRecoverError, findEtcdBinaries, runVolumeStep } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';

/**
 * One member's part of `quorum` on Kubernetes, run by a Job that mounts the member's PVC where etcd
 * mounts it: set the old data aside inside the volume, or fetch the restore point from the bucket,
 * verify it and restore it with etcdutl. Reports to the bucket when its effect holds.
 */
export default class AgentRestoreMember extends BaseCommand {
  static override hidden = true;
  static override summary = 'In-cluster part of `quorum`: set a member\'s data aside, or restore it from the bucket (a Job mounting its PVC runs this).';
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    phase: Flags.option({ options: ['set-aside', 'restore'] as const, required: true })(),
    'recovery-id': Flags.string({ required: true }),
    member: Flags.string({ required: true }),
    snapshot: Flags.string({ description: 'Backup to restore (phase restore).' }),
    token: Flags.string({ description: 'New initial-cluster token (phase restore).' }),
    bump: Flags.integer({ min: 0, description: 'Revision bump (phase restore).' }),
  };

  async run(): Promise<Record<string, unknown>> {
    const { flags } = await this.parse(AgentRestoreMember);
    this.setup(flags);
    const target = await this.openTarget(flags);
    const c = target.contract;
    if (!c) throw new EtcdRecoverError('CONFIG', 'agent restore-member needs the recovery contract (--contract-file / ETCD_RECOVER_CONTRACT)');
    const member = c.etcd.members.find((m) => m.name === flags.member);
    if (!member) throw new EtcdRecoverError('USAGE', `no member named ${flags.member} in the contract`);
    const catalog = target.catalog();
    const result = await runVolumeStep({
      phase: flags.phase,
      catalog,
      recoveryId: flags['recovery-id'],
      member,
      dataDir: c.etcd.dataDir,
      members: c.etcd.members,
      ...(flags.snapshot ? { snapshot: flags.snapshot } : {}),
      ...(flags.token ? { token: flags.token } : {}),
      ...(flags.bump !== undefined ? { bump: flags.bump } : {}),
      ...(flags.phase === 'restore' ? { etcdutl: findEtcdBinaries().etcdutl } : {}),
      signal: this.abort.signal,
      progress: (m) => this.progress.step(m),
    });
    this.render(result, () => `${flags.member}: ${flags.phase} done`);
    return result;
  }
}
