import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Flags } from '@oclif/core';
import { stringify } from 'yaml';
import { Etcd3Gateway, EtcdRecoverError, type EtcdTls } from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';

interface Decision {
  state: 'new' | 'existing';
  initialCluster: string;
  reason: string;
}

/**
 * Init container of every etcd member pod: decides how the member starts and
 * writes etcd's config file. A member with data starts on it; an empty member
 * bootstraps a new cluster when no peer has a quorum (or its peers bootstrapped
 * without it and it never started), and joins the existing cluster
 * (initial-cluster-state existing) when a peer lists its peer URL as a learner
 * added by `member replace` or auto-heal. An empty member whose old
 * identity is still registered would corrupt the cluster if it started: it
 * exits with a message instead (crash-looping until auto-heal replaces it).
 */
export default class MemberInit extends BaseCommand {
  static override hidden = true;
  static override summary = 'Init container of an etcd member pod: choose new/existing and write etcd.conf.yml.';
  static override flags = {
    name: Flags.string({ required: true }),
    'data-dir': Flags.string({ required: true }),
    'config-file': Flags.string({ required: true }),
    'initial-cluster': Flags.string({ required: true, description: 'name=peerURL,…' }),
    'client-urls': Flags.string({ required: true, description: 'name=clientURL,…' }),
    'initial-cluster-token': Flags.string({ required: true }),
    'peer-url': Flags.string({ required: true }),
    'client-url': Flags.string({ required: true }),
    'metrics-port': Flags.integer({ default: 2381 }),
    'server-tls-dir': Flags.string(),
    'client-tls-dir': Flags.string(),
    'peer-tls-dir': Flags.string(),
    'quota-backend-bytes': Flags.integer(),
    'etcd-arg': Flags.string({ multiple: true, description: 'Extra etcd flag --k=v (repeatable).' }),
    wait: Flags.integer({ default: 300, description: 'Seconds to wait to be added to an existing cluster.' }),
  };

  async run(): Promise<Decision> {
    const { flags } = await this.parse(MemberInit);
    this.setup({ quiet: false });
    const hasData = existsSync(join(flags['data-dir'], 'member'));
    const peers = pairs(flags['client-urls']).filter(([n]) => n !== flags.name).map(([, u]) => u);
    const tls = flags['client-tls-dir'] ? readTls(flags['client-tls-dir']) : undefined;
    let decision: Decision | undefined;
    if (hasData) {
      // Data from a member that was removed and re-added as a learner (member replace, auto-heal):
      // it must not start on it. Set it aside inside the volume (never deleted) and join empty.
      const { list } = await clusterMembers(peers, tls);
      const me = list?.find((m) => m.peerURLs.includes(flags['peer-url']));
      if (me?.isLearner && !me.clientURLs.length) {
        const aside = `${flags['data-dir']}.before-${new Date().toISOString().replace(/[-:.]/g, '')}`;
        renameSync(flags['data-dir'], aside);
        this.progress.step(`member-init ${flags.name}: re-added as learner ${me.id}; old data moved to ${aside}`);
      } else {
        decision = { state: 'new', initialCluster: flags['initial-cluster'], reason: 'data present: etcd starts on it' };
      }
    }
    decision ??= await decide(flags.name, flags['peer-url'], flags['initial-cluster'], peers, tls, flags.wait, (m) => this.progress.step(m));
    const scheme = (u: string) => new URL(u).protocol.replace(':', '');
    const config: Record<string, unknown> = {
      name: flags.name,
      'data-dir': flags['data-dir'],
      'listen-client-urls': `${scheme(flags['client-url'])}://0.0.0.0:${new URL(flags['client-url']).port}`,
      'advertise-client-urls': flags['client-url'],
      'listen-peer-urls': `${scheme(flags['peer-url'])}://0.0.0.0:${new URL(flags['peer-url']).port}`,
      'initial-advertise-peer-urls': flags['peer-url'],
      'listen-metrics-urls': `http://0.0.0.0:${flags['metrics-port']}`,
      'initial-cluster': decision.initialCluster,
      'initial-cluster-state': decision.state,
      'initial-cluster-token': flags['initial-cluster-token'],
    };
    if (flags['quota-backend-bytes']) config['quota-backend-bytes'] = flags['quota-backend-bytes'];
    if (flags['server-tls-dir']) config['client-transport-security'] = tlsBlock(flags['server-tls-dir']);
    if (flags['peer-tls-dir']) config['peer-transport-security'] = tlsBlock(flags['peer-tls-dir']);
    for (const a of flags['etcd-arg'] ?? []) {
      const m = /^--([^=]+)=(.*)$/.exec(a);
      if (!m) throw new EtcdRecoverError('USAGE', `--etcd-arg ${a} is not --name=value`);
      const v = m[2]!;
      config[m[1]!] = /^\d+$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v;
    }
    mkdirSync(dirname(flags['config-file']), { recursive: true });
    writeFileSync(flags['config-file'] + '.tmp', stringify(config));
    renameSync(flags['config-file'] + '.tmp', flags['config-file']);
    this.progress.step(`member-init ${flags.name}: initial-cluster-state ${decision.state} (${decision.reason}); wrote ${flags['config-file']}`);
    return decision;
  }
}

function pairs(s: string): [string, string][] {
  return s.split(',').filter(Boolean).map((p) => {
    const i = p.indexOf('=');
    return [p.slice(0, i), p.slice(i + 1)];
  });
}

function readTls(dir: string): EtcdTls {
  return { ca: readFileSync(join(dir, 'ca.crt')), cert: readFileSync(join(dir, 'tls.crt')), key: readFileSync(join(dir, 'tls.key')) };
}

function tlsBlock(dir: string): Record<string, unknown> {
  return { 'cert-file': join(dir, 'tls.crt'), 'key-file': join(dir, 'tls.key'), 'trusted-ca-file': join(dir, 'ca.crt'), 'client-cert-auth': true };
}

async function decide(name: string, peerURL: string, staticCluster: string, peers: string[], tls: EtcdTls | undefined, waitSeconds: number, log: (m: string) => void): Promise<Decision> {
  const deadline = Date.now() + waitSeconds * 1000;
  for (let attempt = 0; ; attempt++) {
    const { list, leaderless } = await clusterMembers(peers, tls);
    if (!list && leaderless) {
      // A peer holds data but has no leader: the cluster lost quorum. Bootstrapping empty here would
      // form a new cluster with the same member IDs beside that data (and take its writes away).
      throw new EtcdRecoverError('QUORUM_LOST', `${name} is empty and peer ${leaderless.endpoint} holds data (revision ${leaderless.revision}) without a leader: the cluster lost quorum, so ${name} must not bootstrap a new one`, {
        hint: 'restore the cluster: kubectl etcd-recover quorum',
      });
    }
    if (!list) {
      return { state: 'new', initialCluster: staticCluster, reason: 'no peer has a quorum: bootstrapping' };
    }
    const me = list.find((m) => m.peerURLs.includes(peerURL));
    if (me && me.isLearner) {
      const initialCluster = list.map((m) => `${m.name || (m.peerURLs.includes(peerURL) ? name : m.id)}=${m.peerURLs[0]}`).join(',');
      return { state: 'existing', initialCluster, reason: `joining the running cluster as learner ${me.id}` };
    }
    if (me && !me.clientURLs.length) {
      // A member of the initial cluster that has never started: the others bootstrapped without it.
      return { state: 'new', initialCluster: staticCluster, reason: `initial member ${me.id} starting after its peers bootstrapped` };
    }
    if (me) {
      throw new EtcdRecoverError('PRECONDITION', `${name} is empty but still registered as started member ${me.id}: starting it would corrupt the cluster`, {
        hint: `replace it: kubectl etcd-recover member replace ${name} (auto-heal does this)`,
      });
    }
    if (Date.now() > deadline) {
      throw new EtcdRecoverError('PRECONDITION', `${name} is empty and the running cluster does not list ${peerURL}`, {
        hint: `add it: kubectl etcd-recover member replace ${name}`,
      });
    }
    if (attempt % 15 === 0) log(`${name}: the cluster runs without ${peerURL}; waiting to be added (member replace / auto-heal)`);
    await sleep(2_000);
  }
}

/**
 * The membership as a peer with a leader sees it; else, a peer that answers without a leader but
 * holds data (revision > 1: it served writes, unlike a member still bootstrapping a new cluster).
 */
async function clusterMembers(peers: string[], tls: EtcdTls | undefined) {
  let leaderless: { endpoint: string; revision: number } | undefined;
  for (const p of peers) {
    const gw = new Etcd3Gateway({ endpoints: [p], timeoutMs: 2_000, ...(tls ? { tls } : {}) });
    try {
      const s = await gw.status(p);
      if (s.leaderId === '0') {
        if (s.revision > 1) leaderless ??= { endpoint: p, revision: s.revision };
        continue;
      }
      return { list: (await gw.list()).members };
    } catch {
      /* not reachable */
    } finally {
      gw.close();
    }
  }
  return { leaderless };
}
