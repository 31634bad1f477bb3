import { strict as assert } from 'node:assert';
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Sandbox, type Sandbox as SandboxT } from '@etcd-recover/core';
import { json, runCli, type CliResult } from '../support/cli.js';
import { destroyMembers, startSandbox, stopSandbox, tempDir, writeKeys } from '../support/sandbox.js';

/**
 * The member start-up decision on real etcd and MinIO: `agent member-init` (the init container of
 * every etcd pod) run as the plugin binary against the peers of a real sandbox cluster and its real
 * bucket, and `sandbox up` beside members whose data is gone.
 */
describe('member start: never an empty or stale cluster while backups exist (real etcd + MinIO)', function () {
  this.timeout(300_000);
  let sb: SandboxT;
  let tmp: ReturnType<typeof tempDir>;
  let backup: { name: string; revision: number; createdAt: string };
  let staleDir: string;

  const sandboxCli = (args: string[]) => runCli(args, { env: { ETCD_RECOVER_SANDBOX: sb.dir } });

  /** member-init for `etcd-1` of the sandbox's cluster, its peers the sandbox's members, the bucket the sandbox's MinIO. */
  const memberInit = (dataDir: string, extra: string[] = [], s3: Record<string, string> = {}): Promise<CliResult & { config?: Record<string, unknown> }> => {
    const m = sb.state.members;
    const cfg = join(tmp.path, `etcd-${Math.random().toString(36).slice(2)}.conf.yml`);
    const s3c = sb.s3Config();
    return runCli(
      [
        'agent', 'member-init',
        '--name', 'etcd-1',
        '--data-dir', dataDir,
        '--config-file', cfg,
        '--initial-cluster', m.map((x) => `${x.name}=${x.peerURL}`).join(','),
        '--client-urls', m.map((x) => `${x.name}=${x.clientURL}`).join(','),
        '--initial-cluster-token', sb.state.token,
        '--peer-url', m[1]!.peerURL,
        '--client-url', m[1]!.clientURL,
        '--peer-wait', '1',
        ...(extra.includes('--cluster') ? [] : ['--cluster', sb.state.cluster]),
        '--bucket', s3c.bucket,
        '--s3-endpoint', s3.endpoint ?? s3c.endpoint!,
        ...extra,
      ],
      { env: { AWS_ACCESS_KEY_ID: s3c.credentials!.accessKeyId, AWS_SECRET_ACCESS_KEY: s3c.credentials!.secretAccessKey }, timeoutMs: 120_000 },
    ).then((r) => (existsSync(cfg) ? { ...r, config: parse(readFileSync(cfg, 'utf8')) } : r));
  };

  before(async () => {
    tmp = tempDir();
    sb = await startSandbox({ members: 3, cluster: 'ms' });
    await writeKeys(sb.endpoints(), 200, 'a/');
    // A copy of etcd-2's data as it was before the last writes and the backup: a member that fell behind.
    await sb.stopMember('etcd-2');
    staleDir = join(tmp.path, 'stale-data');
    cpSync(sb.member('etcd-2').dataDir, staleDir, { recursive: true });
    sb.startMember('etcd-2', 'new');
    await sb.waitHealthy();
    await writeKeys(sb.endpoints(), 300, 'b/');
    const r = await sandboxCli(['backup', 'create', '-o', 'json', '-q']);
    assert.equal(r.code, 0, r.stderr);
    backup = json(r);
  });
  after(async () => {
    const current = sb && Sandbox.load(sb.dir);
    if (current) await current.down({ purge: true });
    await stopSandbox(sb);
    tmp?.remove();
  });

  it('sandbox up refuses to start a member whose data is gone beside members with data, naming member replace', async () => {
    await destroyMembers(sb, ['etcd-1']);
    const r = await sandboxCli(['sandbox', 'up']);
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stderr, /etcd-1 has no data while etcd-0, etcd-2 hold data: starting it as new would corrupt the cluster; not started/);
    assert.match(r.stderr, /kubectl etcd-recover member replace etcd-1/);
    const st = Sandbox.load(sb.dir)!;
    assert.equal(st.isRunning('etcd-1'), false, 'etcd-1 was not started');
    assert.equal(existsSync(join(st.member('etcd-1').dataDir, 'member')), false, 'no new empty member was created');
    assert.ok(st.isRunning('etcd-0') && st.isRunning('etcd-2'));
  });

  it('sandbox up with two members\' data gone starts the survivor only and names quorum', async () => {
    await destroyMembers(sb, ['etcd-2']);
    const r = await sandboxCli(['sandbox', 'up']);
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stderr, /etcd-1, etcd-2 have no data while etcd-0 holds data, fewer than a quorum/);
    assert.match(r.stderr, /kubectl etcd-recover quorum/);
    const st = Sandbox.load(sb.dir)!;
    assert.equal(st.isRunning('etcd-1') || st.isRunning('etcd-2'), false);
    await st.stopMember('etcd-0');
    sb = Sandbox.load(sb.dir)!;
  });

  it('member-init: empty, no peer answers, a verified backup in the bucket → refuses with one line naming it and `quorum`', async () => {
    const empty = join(tmp.path, 'empty-1');
    const r = await memberInit(empty);
    assert.equal(r.code, 9, r.stderr);
    assert.equal(r.config, undefined, 'no etcd config written: etcd does not start');
    const line = r.stderr.split('\n').find((l) => l.startsWith('error: '));
    assert.ok(line, r.stderr);
    assert.ok(line.includes(`newest backup ${backup.name} (revision ${backup.revision}, ${backup.createdAt})`), line);
    assert.match(line, /etcd-1 is empty, no peer has a quorum, and 1 verified backup\(s\) of this cluster exist: refusing to bootstrap an empty cluster/);
    assert.match(line, /restore it with: kubectl etcd-recover quorum$/);
    assert.equal(existsSync(join(empty, 'member')), false);
  });

  it('member-init: a surviving member whose data is older than the newest backup → refuses, naming both revisions', async () => {
    const r = await memberInit(staleDir);
    assert.equal(r.code, 9, r.stderr);
    assert.equal(r.config, undefined);
    const m = /etcd-1 holds data at revision (\d+), behind the newest verified backup (\S+) \(revision (\d+), /.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.ok(Number(m[1]) < backup.revision);
    assert.equal(m[2], backup.name);
    assert.match(r.stderr, /kubectl etcd-recover quorum/);
  });

  it('member-init: a member whose data is at the newest backup\'s revision or above → starts on it', async () => {
    const r = await memberInit(sb.member('etcd-0').dataDir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.config?.['initial-cluster-state'], 'new');
    assert.match(r.stderr, /not behind the newest verified backup/);
  });

  it('member-init: empty, the bucket holds no backup of this cluster (first start) → bootstraps', async () => {
    const r = await memberInit(join(tmp.path, 'empty-2'), ['--cluster', 'brand-new']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.config?.['initial-cluster-state'], 'new');
    assert.match(r.stderr, /the bucket holds no backup of this cluster: bootstrapping/);
  });

  it('member-init: empty, the bucket cannot be read → refuses (it cannot prove nothing is lost)', async () => {
    const r = await memberInit(join(tmp.path, 'empty-3'), [], { endpoint: 'http://127.0.0.1:9' });
    assert.equal(r.code, 6, r.stderr);
    assert.equal(r.config, undefined);
    assert.match(r.stderr, /the bucket cannot be read .*cannot prove no backup of this cluster exists/);
  });

  it('sandbox up with every member\'s data gone and a verified backup → refuses, naming the backup and quorum', async () => {
    rmSync(sb.member('etcd-0').dataDir, { recursive: true, force: true });
    const r = await sandboxCli(['sandbox', 'up']);
    assert.equal(r.code, 9, r.stderr);
    assert.ok(r.stderr.includes(`newest backup ${backup.name}`), r.stderr);
    assert.match(r.stderr, /etcd-0, etcd-1, etcd-2 are empty/);
    assert.match(r.stderr, /kubectl etcd-recover quorum/);
    const st = Sandbox.load(sb.dir)!;
    assert.equal(st.state.members.some((m) => st.isRunning(m.name)), false, 'no member started');
  });
});
