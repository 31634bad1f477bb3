import { Flags } from '@oclif/core';
import { isVerified, parseDuration, type SnapshotRecord } from '@etcd-recover/core';
import { BaseCommand } from '../base-command.js';
import { outputFlag, storeFlags, targetFlags } from '../flags.js';
import { age, bytes, table } from '../render.js';

export interface MemberRow {
  name: string;
  endpoint: string;
  running?: boolean;
  healthy: boolean;
  leader: boolean;
  learner: boolean;
  revision?: number;
  raftIndex?: number;
  raftTerm?: number;
  dbSize?: number;
  version?: string;
  alarms: string[];
  error?: string;
}

export interface StatusResult {
  cluster: string;
  target: string;
  quorum: boolean;
  healthy: number;
  members: MemberRow[];
  backups: { latest: Pick<SnapshotRecord, 'name' | 'createdAt' | 'revision'>[]; latestVerified?: Pick<SnapshotRecord, 'name' | 'createdAt' | 'revision'>; withinRpo: boolean; rpoSeconds: number; error?: string };
}

export default class Status extends BaseCommand {
  static override summary = 'Health of every member and of the backups: leader, revision, raft index, DB size, alarms, RPO.';
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status -o json', '<%= config.bin %> status --rpo 15m'];
  static override flags = {
    ...targetFlags,
    ...storeFlags,
    ...outputFlag,
    rpo: Flags.string({ description: 'Recovery point objective: the newest verified backup must be younger than this.', default: '1h' }),
  };

  async run(): Promise<StatusResult> {
    const { flags } = await this.parse(Status);
    this.setup({ ...flags, quiet: true });
    const target = this.openTarget(flags);
    const rpoMs = parseDuration(flags.rpo);
    let members: MemberRow[];
    let quorum: boolean;
    if (target.sandbox) {
      const o = await target.recoveryTarget().observe(this.abort.signal);
      quorum = o.quorum;
      members = o.members.map((m) => row(m.name, m.clientURL, m.status, m.error, m.running));
    } else {
      const gw = target.gateway();
      const sts = await Promise.all(gw.endpoints.map(async (ep) => {
        try {
          return { ep, s: await gw.status(ep, this.abort.signal) };
        } catch (e) {
          return { ep, e: (e as Error).message };
        }
      }));
      members = sts.map((x) => row(x.ep, x.ep, x.s, x.e));
      quorum = members.filter((m) => m.healthy).length > members.length / 2;
    }
    let backups: StatusResult['backups'];
    try {
      const { snapshots } = await target.catalog().list(this.abort.signal);
      const pick = (s: SnapshotRecord) => ({ name: s.name, createdAt: s.createdAt, revision: s.revision });
      const lv = snapshots.find(isVerified);
      backups = {
        latest: snapshots.slice(0, 3).map(pick),
        ...(lv ? { latestVerified: pick(lv) } : {}),
        withinRpo: Boolean(lv && Date.now() - Date.parse(lv.createdAt) <= rpoMs),
        rpoSeconds: rpoMs / 1000,
      };
    } catch (e) {
      backups = { latest: [], withinRpo: false, rpoSeconds: rpoMs / 1000, error: (e as Error).message };
    }
    const result: StatusResult = { cluster: target.cluster, target: target.describe(), quorum, healthy: members.filter((m) => m.healthy).length, members, backups };
    this.render(result, () => {
      const lines = [
        `cluster ${result.cluster} (${result.target}): ${result.healthy}/${members.length} healthy, quorum ${quorum ? 'holds' : 'LOST'}`,
        table(members, [
          { header: 'Member', get: (m) => m.name },
          { header: 'Health', get: (m) => (m.healthy ? 'healthy' : m.error ? 'unreachable' : 'no leader') },
          { header: 'Role', get: (m) => (m.leader ? 'leader' : m.learner ? 'learner' : m.healthy ? 'follower' : '') },
          { header: 'Revision', get: (m) => m.revision, align: 'right' },
          { header: 'Raft-Index', get: (m) => m.raftIndex, align: 'right' },
          { header: 'DB-Size', get: (m) => bytes(m.dbSize), align: 'right' },
          { header: 'Alarms', get: (m) => m.alarms.join(',') || '-' },
          { header: 'Endpoint', get: (m) => m.endpoint, wide: true },
          { header: 'Version', get: (m) => m.version, wide: true },
        ], { wide: this.format === 'wide' }),
      ];
      const b = result.backups;
      if (b.error) lines.push(`backups: ${b.error}`);
      else if (!b.latestVerified) lines.push(`backups: no verified backup — RPO ${flags.rpo} NOT met`);
      else lines.push(`backups: newest verified ${b.latestVerified.name} (${age(b.latestVerified.createdAt)} ago, revision ${b.latestVerified.revision}) — RPO ${flags.rpo} ${b.withinRpo ? 'met' : 'NOT met'}`);
      return lines.join('\n');
    });
    return result;
  }
}

function row(name: string, endpoint: string, s: import('@etcd-recover/core').MemberStatus | undefined, error: string | undefined, running?: boolean): MemberRow {
  return {
    name,
    endpoint,
    ...(running !== undefined ? { running } : {}),
    healthy: Boolean(s && s.leaderId !== '0'),
    leader: Boolean(s?.isLeader),
    learner: Boolean(s?.isLearner),
    ...(s ? { revision: s.revision, raftIndex: s.raftIndex, raftTerm: s.raftTerm, dbSize: s.dbSize, version: s.version } : {}),
    alarms: s?.errors ?? [],
    ...(error ? { error } : {}),
  };
}
