import { Flags } from '@oclif/core';
import { EtcdRecoverError } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag, storeFlags, targetFlags } from '../../flags.js';

/**
 * The free space of a mounted volume (statfs), printed as JSON and, with --recovery-id, reported to
 * the recovery's folder in the bucket: what `quorum` checks on every member's PVC before it stops
 * anything (a Job mounting the PVC runs this).
 */
export default class AgentStatfs extends BaseCommand {
  static override hidden = true;
  static override summary = 'Free space of a mounted volume (a Job of `quorum` runs this on each member\'s PVC).';
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    ...quietFlag,
    path: Flags.string({ required: true, description: 'A path on the volume.' }),
    'recovery-id': Flags.string({ description: 'Report to this recovery\'s folder in the bucket.' }),
    member: Flags.string({ description: 'The member whose volume this is (names the report).' }),
  };

  async run(): Promise<Record<string, unknown>> {
    const { flags } = await this.parse(AgentStatfs);
    this.setup(flags);
    const { statfs } = await import('node:fs/promises');
    let s;
    try {
      s = await statfs(flags.path, { bigint: true });
    } catch (e) {
      throw new EtcdRecoverError('PRECONDITION', `cannot stat the filesystem of ${flags.path}: ${(e as Error).message}`, { cause: e });
    }
    const result = {
      path: flags.path,
      ...(flags.member ? { member: flags.member } : {}),
      blockSize: Number(s.bsize),
      totalBytes: Number(s.blocks * s.bsize),
      freeBytes: Number(s.bavail * s.bsize),
      at: new Date().toISOString(),
    };
    if (flags['recovery-id']) {
      if (!flags.member) throw new EtcdRecoverError('USAGE', '--recovery-id needs --member');
      const target = await this.openTarget(flags);
      const catalog = target.catalog();
      const { volumeSpaceKey } = await import('@etcd-recover/core/kubernetes');
      await catalog.store.put(volumeSpaceKey(catalog.cluster, flags['recovery-id'], flags.member), JSON.stringify(result, null, 2), { contentType: 'application/json' });
    }
    this.render(result, () => JSON.stringify(result));
    return result;
  }
}
