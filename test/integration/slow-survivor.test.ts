import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readEtcdMetrics, spawnDetached, stopProcess, type Sandbox } from '@etcd-recover/core';
import { runCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { startSandbox, stopSandbox, tempDir, writeKeys } from '../support/sandbox.js';

/**
 * A survivor that restarts without its peers does not serve clients (etcd needs a quorum to publish
 * itself), so asking peers on the client port cannot see it. Its metrics port answers at once: an
 * empty member must find it there and not bootstrap a new cluster beside it — even with no backup in
 * the bucket to warn it.
 */
describe('member start beside a survivor that restarted without a quorum (real etcd + MinIO)', function () {
  this.timeout(180_000);
  let sb: Sandbox;
  let tmp: ReturnType<typeof tempDir>;
  let survivor: number | undefined;

  before(async () => {
    tmp = tempDir();
    sb = await startSandbox({ members: 3, cluster: 'slow-survivor' });
    await writeKeys(sb.endpoints(), 50, 'k/');
    for (const m of sb.state.members) await sb.stopMember(m.name);
  });
  after(async () => {
    if (survivor) await stopProcess(survivor, 5_000);
    await stopSandbox(sb);
    tmp?.remove();
  });

  it('an empty member refuses (exit 9, naming quorum) when a peer holds data without a leader, seen on its metrics port', async () => {
    const metricsPort = await freePort();
    const m0 = sb.member('etcd-0');
    survivor = spawnDetached(sb.state.binaries.etcd, [...sb.memberArgs('etcd-0', 'new'), '--listen-metrics-urls', `http://127.0.0.1:${metricsPort}`], join(tmp.path, 'etcd-0.log'));
    let seen;
    for (let i = 0; i < 40 && !seen; i++) {
      seen = await readEtcdMetrics(`http://127.0.0.1:${metricsPort}/metrics`);
      if (!seen) await sleep(250);
    }
    assert.ok(seen && !seen.hasLeader && seen.revision > 1, `the survivor runs leaderless with data: ${JSON.stringify(seen)}`);

    const empty = join(tmp.path, 'etcd-1-empty');
    mkdirSync(empty);
    const cfg = join(tmp.path, 'etcd-1.conf.yml');
    const s3c = sb.s3Config();
    const members = sb.state.members;
    const r = await runCli(
      [
        'agent', 'member-init',
        '--name', 'etcd-1', '--data-dir', empty, '--config-file', cfg,
        '--initial-cluster', members.map((x) => `${x.name}=${x.peerURL}`).join(','),
        '--client-urls', members.map((x) => `${x.name}=${x.clientURL}`).join(','),
        '--initial-cluster-token', sb.state.token,
        '--peer-url', members[1]!.peerURL, '--client-url', members[1]!.clientURL,
        '--metrics-port', String(metricsPort), '--peer-wait', '1',
        '--cluster', sb.state.cluster, '--bucket', s3c.bucket, '--s3-endpoint', s3c.endpoint!,
      ],
      { env: { AWS_ACCESS_KEY_ID: s3c.credentials!.accessKeyId, AWS_SECRET_ACCESS_KEY: s3c.credentials!.secretAccessKey }, timeoutMs: 60_000 },
    );
    assert.equal(r.code, 9, r.stderr);
    assert.match(r.stderr, new RegExp(`etcd-1 is empty and peer http://127\\.0\\.0\\.1:${metricsPort}/metrics holds data \\(revision ${seen.revision}\\) without a leader`));
    assert.match(r.stderr, /kubectl etcd-recover quorum/);
    assert.equal(existsSync(cfg), false, 'no config written: nothing bootstraps');
    assert.ok(existsSync(join(m0.dataDir, 'member')), "the survivor's data is untouched");
  });
});
