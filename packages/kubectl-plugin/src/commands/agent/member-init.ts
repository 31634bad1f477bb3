import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Flags } from '@oclif/core';
import { stringify } from 'yaml';
import {
  Etcd3Gateway,
  EtcdRecoverError,
  castVote,
  decideStartup,
  readEtcdMetrics,
  findEtcdBinaries,
  readRoundFacts,
  roundOfRestoredData,
  runAutoRestore,
  type AutoRestoreDecisionRef,
  type MemberSpec,
  type RoundFacts,
  readBucketFacts,
  readDataFacts,
  readDataRevision,
  type BucketFacts,
  type Catalog,
  type DataFacts,
  type EtcdTls,
  type PeerFacts,
  type StartupAction,
} from '@etcd-recover/core';
import { BaseCommand } from '../../base-command.js';
import { storeFlags, targetFlags } from '../../flags.js';
import { readTlsDir, requireTlsDir } from '../../tls-dir.js';

interface Decision {
  state: 'new' | 'existing';
  initialCluster: string;
  reason: string;
  /** The initial-cluster token, when not the declared one (an automatic restore's new token). */
  token?: string;
  /** The automatic-restore round this member was restored by. */
  autoRestore?: { round: string; recoveryId: string; snapshot: string; completed: boolean };
}

/**
 * Init container of every etcd member pod: decides how the member starts and writes etcd's config
 * file. The decision itself is the core's start-up decision table (decideStartup, see docs/design.md
 * "Member start-up decision"); this command gathers its facts — the data dir, the peers, the
 * cluster's catalog in the bucket (from the recovery contract and the backup credentials, as the
 * backup CronJob reads them), the data's revision — and applies it:
 * - a member with data starts on it, unless no peer has a quorum and its revision is below the
 *   newest verified backup's (then it refuses: it must not become the truth of a new quorum);
 *   data of a member re-added as a learner (member replace, auto-heal) is set aside, never deleted;
 * - an empty member joins a running cluster only as the learner it was added as; it waits a bounded
 *   time (--peer-wait) for peers with a quorum, and bootstraps a new cluster only when the bucket
 *   proves there is no verified backup of this cluster. Otherwise it exits non-zero with one line
 *   naming the newest backup and `kubectl etcd-recover quorum` (the pod stays in Init).
 * - with --auto-restore (autoRestore on the component; off by default), that refusal becomes a
 *   restore when every member is proven empty: each member votes in the bucket, ONE decision object
 *   (If-None-Match) names the newest trusted backup, the new token and the revision bump, and every
 *   member restores from it under the recovery lock, journaled (core recovery/auto-restore.ts).
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
    'peer-wait': Flags.integer({ default: 30, min: 0, description: 'Seconds an empty member (or one behind the newest backup) waits for peers with a quorum before it looks at the bucket.' }),
    'auto-restore': Flags.boolean({ default: false, description: 'When every member is empty and trusted backups exist, restore from the newest trusted backup (one decision in the bucket) instead of refusing.' }),
    'vote-wait': Flags.integer({ default: 120, min: 0, description: 'With --auto-restore: seconds (after the peer wait) an empty member waits for every member to vote empty.' }),
    cluster: targetFlags.cluster,
    'contract-file': targetFlags['contract-file'],
    ...storeFlags,
  };

  async run(): Promise<Decision> {
    const { flags } = await this.parse(MemberInit);
    this.setup({ quiet: false });
    const name = flags.name;
    const dataDir = flags['data-dir'];
    const peers = pairs(flags['client-urls']).filter(([n]) => n !== name).map(([, u]) => u);
    // A TLS Secret missing a key is found here, naming the Secret, before etcd starts.
    if (flags['server-tls-dir']) requireTlsDir(flags['server-tls-dir'], "etcd's server TLS Secret (tls.serverSecret)");
    if (flags['peer-tls-dir']) requireTlsDir(flags['peer-tls-dir'], "etcd's peer TLS Secret (tls.peerSecret)");
    const tls = flags['client-tls-dir'] ? readTlsDir(flags['client-tls-dir'], "etcd's client TLS Secret (tls.clientSecret)") : undefined;
    const log = (m: string) => this.progress.step(`member-init ${name}: ${m}`);

    let catalog: Catalog | undefined;
    try {
      const target = await this.openTarget({
        ...(flags.cluster ? { cluster: flags.cluster } : {}),
        ...(flags['contract-file'] ? { 'contract-file': flags['contract-file'] } : {}),
        ...(flags.bucket ? { bucket: flags.bucket } : {}),
        ...(flags.prefix !== undefined ? { prefix: flags.prefix } : {}),
        ...(flags['s3-endpoint'] ? { 's3-endpoint': flags['s3-endpoint'] } : {}),
        ...(flags['s3-region'] ? { 's3-region': flags['s3-region'] } : {}),
        ...(flags['s3-path-style'] !== undefined ? { 's3-path-style': flags['s3-path-style'] } : {}),
        ...(flags['s3-ca-file'] ? { 's3-ca-file': flags['s3-ca-file'] } : {}),
        ...(flags['s3-credentials-file'] ? { 's3-credentials-file': flags['s3-credentials-file'] } : {}),
        ...(flags['s3-profile'] ? { 's3-profile': flags['s3-profile'] } : {}),
        ...(flags['s3-checksum'] ? { 's3-checksum': flags['s3-checksum'] } : {}),
        ...(flags['s3-sse'] ? { 's3-sse': flags['s3-sse'] } : {}),
        ...(flags['s3-sse-kms-key-id'] ? { 's3-sse-kms-key-id': flags['s3-sse-kms-key-id'] } : {}),
        ...(flags['s3-sse-c-key-file'] ? { 's3-sse-c-key-file': flags['s3-sse-c-key-file'] } : {}),
        ...(flags['age-recipients-file'] ? { 'age-recipients-file': flags['age-recipients-file'] } : {}),
        ...(flags['age-identity-file'] ? { 'age-identity-file': flags['age-identity-file'] } : {}),
      });
      catalog = target.catalog();
    } catch (e) {
      // No bucket given: a fact for the decision (an empty member then cannot prove there is nothing to lose).
      if (!(e instanceof EtcdRecoverError && e.code === 'CONFIG')) throw e;
      log(`no bucket: ${e.message}`);
    }

    const began = Date.now();
    let data: DataFacts = readDataFacts(dataDir);
    let bucket: BucketFacts | undefined;
    let round: RoundFacts | undefined;
    let roundLogged = false;
    const autoRestore = flags['auto-restore'] && catalog !== undefined;
    const memberSpecs: MemberSpec[] = pairs(flags['initial-cluster']).map(([n, peerURL]) => ({ name: n, peerURL, clientURL: pairs(flags['client-urls']).find(([c]) => c === n)?.[1] ?? '' }));
    const me = memberSpecs.find((m) => m.name === name) ?? { name, peerURL: flags['peer-url'], clientURL: flags['client-url'] };
    const restore = async (decision: AutoRestoreDecisionRef | undefined, tally: Extract<RoundFacts, { kind: 'voting' }>['tally'] | undefined) =>
      runAutoRestore({
        catalog: catalog!,
        me,
        members: memberSpecs,
        dataDir,
        etcdutl: findEtcdBinaries().etcdutl,
        ...(decision ? { decision } : {}),
        ...(tally ? { tally } : {}),
        command: `agent member-init --name ${name}`,
        target: `member-init ${name}`,
        signal: this.abort.signal,
        progress: log,
      });
    let restoredToken: string | undefined;
    if (autoRestore && data.present) {
      // A member with data never lets an automatic restore happen: it votes "has data".
      await castVote(catalog!, { member: name, state: 'has-data' }, this.abort.signal).catch((e: Error) => log(`warning: cannot write the automatic-restore vote: ${e.message}`));
      if (data.restored) {
        // Restored by an automatic-restore round: a crash before the journal recorded it is completed now.
        const r = await roundOfRestoredData(catalog!, data.restored.recoveryId, name).catch(() => undefined);
        if (r?.open) {
          log(`data restored by automatic-restore round ${r.open.round}; recording it in its journal`);
          await restore(r.open, undefined);
        }
        if (r) restoredToken = r.token;
      }
    }
    let lastWait = '';
    let lastWaitAt = 0;
    for (;;) {
      // Without automatic restore, a peer that runs leaderless with data is looked for on its metrics
      // port too. With it, the votes in the bucket prove every member empty instead (and a member an
      // automatic restore already restored runs leaderless until its peers follow).
      const seen = await observePeers(peers, flags['peer-url'], tls, flags['auto-restore'] ? undefined : flags['metrics-port']);
      const facts = () => ({
        member: name,
        data,
        peers: seen.facts,
        ...(bucket ? { bucket } : {}),
        waitedSeconds: (Date.now() - began) / 1000,
        peerWaitSeconds: flags['peer-wait'],
        joinWaitSeconds: flags.wait,
        ...(autoRestore ? { autoRestore: { ...(round ? { round } : {}), voteWaitSeconds: flags['vote-wait'] } } : {}),
      });
      let a: StartupAction = decideStartup(facts());
      // Facts gathered only when the table asks for them.
      while (a.action === 'read-bucket' || a.action === 'read-revision' || a.action === 'read-round') {
        if (a.action !== 'read-round' || !roundLogged) log(a.reason);
        if (a.action === 'read-round') roundLogged = true;
        if (a.action === 'read-round') {
          round = await readRoundFacts(catalog!, name, memberSpecs.map((m) => m.name), { signal: this.abort.signal, vote: seen.facts.kind !== 'quorum' });
          if (round.kind === 'error') log(`automatic restore: ${round.message}`);
        } else if (a.action === 'read-bucket') {
          bucket = await readBucketFacts(catalog, this.abort.signal);
          log(describeBucket(bucket));
        } else if (data.present) {
          const revision = await readDataRevision(dataDir);
          data = { ...data, revision };
          log('revision' in revision ? `data at revision ${revision.revision}` : `cannot read the data's revision: ${revision.error}`);
        }
        a = decideStartup(facts());
      }
      switch (a.action) {
        case 'wait':
          if (a.reason !== lastWait || Date.now() - lastWaitAt > 30_000) log(a.reason);
          lastWait = a.reason;
          lastWaitAt = Date.now();
          round = undefined; // read again (renewing this member's vote) after the wait
          await sleep(2_000, undefined, { signal: this.abort.signal }).catch(() => {
            throw this.abort.signal.reason as Error;
          });
          continue;
        case 'set-aside-and-join': {
          const aside = `${dataDir}.before-${new Date().toISOString().replace(/[-:.]/g, '')}`;
          renameSync(dataDir, aside);
          log(`${a.reason}; old data moved to ${aside}`);
          data = { present: false };
          continue;
        }
        case 'refuse':
          throw new EtcdRecoverError(a.code, a.message, { hint: a.hint, retryable: a.retryable });
        case 'auto-restore-decide':
        case 'auto-restore': {
          log(a.reason);
          const r = await restore(a.action === 'auto-restore' ? a.decision : undefined, round?.kind === 'voting' ? round.tally : undefined);
          return this.writeConfig(flags, {
            state: 'new',
            initialCluster: flags['initial-cluster'],
            token: r.decision.token,
            reason: `restored from ${r.decision.snapshot.name} by automatic-restore round ${r.decision.round} (${r.decision.recoveryId})`,
            autoRestore: { round: r.decision.round, recoveryId: r.decision.recoveryId, snapshot: r.decision.snapshot.name, completed: r.completed },
          });
        }
        case 'join':
          return this.writeConfig(flags, { state: 'existing', initialCluster: seen.initialCluster(name), reason: a.reason });
        case 'start-on-data':
          if (a.warning) log(`warning: ${a.warning}`);
          return this.writeConfig(flags, { state: 'new', initialCluster: flags['initial-cluster'], reason: a.reason, ...(restoredToken ? { token: restoredToken } : {}) });
        case 'bootstrap':
          return this.writeConfig(flags, { state: 'new', initialCluster: flags['initial-cluster'], reason: a.reason });
      }
    }
  }

  private writeConfig(flags: Record<string, any>, decision: Decision): Decision {
    const scheme = (u: string) => new URL(u).protocol.replace(':', '');
    const config: Record<string, unknown> = {
      name: flags['name'],
      'data-dir': flags['data-dir'],
      'listen-client-urls': `${scheme(flags['client-url'])}://0.0.0.0:${new URL(flags['client-url']).port}`,
      'advertise-client-urls': flags['client-url'],
      'listen-peer-urls': `${scheme(flags['peer-url'])}://0.0.0.0:${new URL(flags['peer-url']).port}`,
      'initial-advertise-peer-urls': flags['peer-url'],
      'listen-metrics-urls': `http://0.0.0.0:${flags['metrics-port']}`,
      'initial-cluster': decision.initialCluster,
      'initial-cluster-state': decision.state,
      'initial-cluster-token': decision.token ?? flags['initial-cluster-token'],
    };
    if (flags['quota-backend-bytes']) config['quota-backend-bytes'] = flags['quota-backend-bytes'];
    if (flags['server-tls-dir']) config['client-transport-security'] = tlsBlock(flags['server-tls-dir']);
    if (flags['peer-tls-dir']) config['peer-transport-security'] = tlsBlock(flags['peer-tls-dir']);
    for (const a of (flags['etcd-arg'] as string[] | undefined) ?? []) {
      const m = /^--([^=]+)=(.*)$/.exec(a);
      if (!m) throw new EtcdRecoverError('USAGE', `--etcd-arg ${a} is not --name=value`);
      const v = m[2]!;
      config[m[1]!] = /^\d+$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v;
    }
    const file: string = flags['config-file'];
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file + '.tmp', stringify(config));
    renameSync(file + '.tmp', file);
    this.progress.step(`member-init ${flags['name']}: initial-cluster-state ${decision.state} (${decision.reason}); wrote ${file}`);
    return decision;
  }
}

function describeBucket(b: BucketFacts): string {
  if (b.kind === 'not-configured') return 'no bucket configured';
  if (b.kind === 'error') return `the bucket cannot be read: ${b.message}`;
  return b.newestVerified
    ? `${b.verified} verified backup(s) in the bucket, newest ${b.newestVerified.name} at revision ${b.newestVerified.revision}`
    : `no verified backup of this cluster in the bucket${b.unverified ? ` (${b.unverified} unverified)` : ''}${b.unreadable ? ` (${b.unreadable} unreadable record(s))` : ''}`;
}

function pairs(s: string): [string, string][] {
  return s.split(',').filter(Boolean).map((p) => {
    const i = p.indexOf('=');
    return [p.slice(0, i), p.slice(i + 1)];
  });
}

function tlsBlock(dir: string): Record<string, unknown> {
  return { 'cert-file': join(dir, 'tls.crt'), 'key-file': join(dir, 'tls.key'), 'trusted-ca-file': join(dir, 'ca.crt'), 'client-cert-auth': true };
}

/** One round of asking the peers: the start-up decision's peer facts, and the membership a join uses. */
async function observePeers(peers: string[], peerURL: string, tls: EtcdTls | undefined, metricsPort?: number): Promise<{ facts: PeerFacts; initialCluster: (name: string) => string }> {
  const { list, leaderless } = await clusterMembers(peers, tls, metricsPort);
  if (!list) {
    return { facts: leaderless ? { kind: 'leaderless-data', ...leaderless } : { kind: 'none' }, initialCluster: () => '' };
  }
  const me = list.find((m) => m.peerURLs.includes(peerURL));
  const state = !me ? 'absent' : me.isLearner ? (me.clientURLs.length ? 'started-learner' : 'learner') : me.clientURLs.length ? 'started' : 'unstarted';
  return {
    facts: { kind: 'quorum', me: state, ...(me ? { memberId: me.id } : {}) },
    initialCluster: (name) => list.map((m) => `${m.name || (m.peerURLs.includes(peerURL) ? name : m.id)}=${m.peerURLs[0]}`).join(','),
  };
}

/**
 * The membership as a peer with a leader sees it; else, a peer that answers without a leader but
 * holds data (revision > 1: it served writes, unlike a member still bootstrapping a new cluster).
 * A restarted member without a quorum does not serve clients at all, so each peer's metrics port
 * (which answers as soon as etcd runs) is asked too: a survivor slow to find its peers is seen there.
 */
async function clusterMembers(peers: string[], tls: EtcdTls | undefined, metricsPort?: number) {
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
  if (!leaderless && metricsPort) {
    for (const p of peers) {
      const url = `http://${new URL(p).hostname}:${metricsPort}/metrics`;
      const m = await readEtcdMetrics(url);
      if (m && !m.hasLeader && m.revision > 1) {
        leaderless = { endpoint: url, revision: m.revision };
        break;
      }
    }
  }
  return { leaderless };
}
