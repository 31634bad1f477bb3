import { Flags } from '@oclif/core';
import { Sandbox, defaultSandboxDir } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { outputFlag, quietFlag } from '../../flags.js';

export default class SandboxDown extends BaseCommand {
  static override summary = 'Stop the sandbox processes; --purge also deletes its folder (data and backups).';
  static override examples = ['<%= config.bin %> sandbox down', '<%= config.bin %> sandbox down --purge'];
  static override flags = {
    ...outputFlag,
    ...quietFlag,
    'sandbox-dir': Flags.string({ description: 'State folder.', env: 'ETCD_RECOVER_SANDBOX' }),
    purge: Flags.boolean({ description: 'Delete the sandbox folder too.' }),
  };

  async run(): Promise<{ dir: string; stopped: boolean; purged: boolean }> {
    const { flags } = await this.parse(SandboxDown);
    this.setup(flags);
    const dir = flags['sandbox-dir'] ?? defaultSandboxDir();
    const sb = Sandbox.load(dir);
    if (sb) await sb.down({ purge: flags.purge });
    const result = { dir, stopped: Boolean(sb), purged: Boolean(sb && flags.purge) };
    this.render(result, () => (sb ? `sandbox at ${dir} stopped${flags.purge ? ' and deleted' : ''}` : `no sandbox at ${dir}`));
    return result;
  }
}
