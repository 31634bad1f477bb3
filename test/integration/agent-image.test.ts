import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONTRACT_API_VERSION, CONTRACT_KIND, layout, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { agentImage, podman, type AgentImage } from '../support/agent-image.js';
import { binaries } from '../support/binaries.js';
import { json, runCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { countKeys, startSandbox, stopSandbox, storeFor, tempDir, writeKeys } from '../support/sandbox.js';

const CLUSTER = 'image-it';
// Not 65532 (the image's own user): any uid must work, with no passwd entry and no writable home.
const UID = 40_000 + Math.floor(Math.random() * 20_000);

describe('the agent image (docker/agent.Dockerfile, built with podman): run non-root, read-only, against real etcd and MinIO', function () {
  this.timeout(300_000);
  let img: AgentImage;
  let sb: Sandbox;
  const tmp = tempDir();
  const contractFile = join(tmp.path, 'contract.json');
  /** What the component's Jobs do: the contract mounted read-only, credentials in the environment. */
  const run = (args: string[], extra: string[] = []) => {
    const s3 = sb.s3Config();
    return podman([
      'run', '--rm', '--network', 'host', '--read-only', '--user', `${UID}:${UID}`,
      '-e', 'HOME=/nonexistent', '-e', `AWS_ACCESS_KEY_ID=${s3.credentials!.accessKeyId}`, '-e', `AWS_SECRET_ACCESS_KEY=${s3.credentials!.secretAccessKey}`,
      '-e', 'ETCD_RECOVER_CONTRACT=/etc/etcd-recover/contract.json', '-v', `${contractFile}:/etc/etcd-recover/contract.json:ro`,
      ...extra, img.image, ...args,
    ]);
  };
  const contract = (members: { name: string; peerURL: string; clientURL: string }[]) => {
    const s3 = sb.s3Config();
    writeFileSync(contractFile, JSON.stringify({
      apiVersion: CONTRACT_API_VERSION,
      kind: CONTRACT_KIND,
      cluster: CLUSTER,
      namespace: 'image-it',
      etcd: { statefulSet: 'etcd', mountPath: '/var/lib/etcd', dataDir: '/var/lib/etcd/data', members: members.map((m) => ({ ...m, pvc: `data-${m.name}` })) },
      backup: { bucket: s3.bucket, prefix: '', endpoint: s3.endpoint, forcePathStyle: true },
      agent: { image: img.image, restoreServiceAccount: 'etcd-restore' },
      dependents: [],
    }));
  };

  before(async function () {
    this.timeout(1_800_000); // a cold cache builds the image here (or waits for setup's background build)
    img = agentImage();
    sb = await startSandbox({ members: 3, cluster: CLUSTER });
    await writeKeys(sb.endpoints(), 2_000, 'k/', 64);
    contract(sb.state.members.map((m) => ({ name: m.name, peerURL: m.peerURL, clientURL: m.clientURL })));
  });
  after(async () => {
    await stopSandbox(sb);
    tmp.remove();
  });

  it('ships production code only, under 300 MB: one Node (the image\'s), the bundled CLI, etcd\'s tools; no dev dependencies', async () => {
    assert.ok(img.bytes < 300_000_000, `image is ${img.bytes} bytes`);
    const r = await podman(['run', '--rm', '--read-only', '--entrypoint', '/bin/sh', img.image, '-c',
      'find / -xdev \\( -name node -o -name typescript -o -name esbuild -o -name mocha -o -name "@pulumi" -o -name tsx \\) -print; for c in etcd etcdctl etcdutl kubectl-etcd_recover; do command -v $c; done; id -u']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(lines.filter((l) => !l.startsWith('/usr/local/bin/') && !/^\d+$/.test(l)), [], 'no dev dependency (TypeScript, esbuild, mocha, Pulumi, tsx) and no second node');
    assert.deepEqual(lines.filter((l) => l.startsWith('/usr/local/bin/')).sort(), ['/usr/local/bin/etcd', '/usr/local/bin/etcdctl', '/usr/local/bin/etcdutl', '/usr/local/bin/kubectl-etcd_recover', '/usr/local/bin/node']);
    assert.equal(lines.at(-1), '65532', 'runs as its own non-root user by default');
    // The rootfs the harness runs pods from is this image's.
    assert.ok(existsSync(join(img.rootfs!, 'opt', 'etcd-recover', 'kubectl-etcd_recover.cjs')));
    // The native age opener beside the bundle (an encrypted backup's chunks opened on the thread pool):
    // built for the image's own Node, it loads there.
    const native = await podman(['run', '--rm', '--read-only', '--entrypoint', '/usr/local/bin/node', img.image, '-e',
      "const m = { exports: {} }; process.dlopen(m, '/opt/etcd-recover/native/age_open.node'); console.log(typeof m.exports.openChunks)"]);
    assert.equal(native.code, 0, native.stderr);
    assert.equal(native.stdout.trim(), 'function');
  });

  it('a random non-root uid with no writable home: --version and help work', async () => {
    const v = await run(['--version']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^@etcd-recover\/kubectl-plugin\/\d+\.\d+\.\d+ linux-x64 node-v24\.21\.0/);
    const h = await run(['backup', '--help']);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /\$ kubectl etcd-recover backup COMMAND/);
    assert.match(h.stdout, /backup create\s+Stream a snapshot/);
  });

  let created: SnapshotRecord;
  it('backup create (what the backup CronJob runs): a verified snapshot and its record in the bucket', async () => {
    const r = await run(['backup', 'create', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    created = json<SnapshotRecord>({ code: r.code, stdout: r.stdout, stderr: r.stderr });
    assert.equal(created.cluster, CLUSTER);
    assert.equal(created.verification?.ok, true);
    assert.ok(created.totalKeys >= 2_000, `totalKeys ${created.totalKeys}`);
    const head = await storeFor(sb).head(layout.snapshotObject(CLUSTER, created.name));
    assert.equal(head?.size, created.objectSize);
    // The host's CLI reads what the image wrote.
    const list = await runCli(['backup', 'list', '--sandbox-dir', sb.dir, '-o', 'json']);
    assert.equal(list.code, 0, list.stderr);
    assert.ok(json<{ snapshots: SnapshotRecord[] }>(list).snapshots.some((s) => s.name === created.name && s.sha256 === created.sha256));
  });

  it('backup verify in the bucket: the same sha256, revision and keys; a missing backup exits with NOT_FOUND', async () => {
    const r = await run(['backup', 'verify', created.name, '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const v = json({ code: r.code, stdout: r.stdout, stderr: r.stderr });
    assert.equal(v.ok, true);
    assert.equal(v.results[0].sha256, created.sha256);
    assert.equal(v.results[0].revision, created.revision);
    const missing = await run(['backup', 'verify', 'full-20000101T000000000Z', '-o', 'json']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stdout + missing.stderr, /full-20000101T000000000Z/);
  });

  it('agent restore-member (a quorum restore Job): sets the old data aside in the volume, restores the backup, and real etcd serves it', async () => {
    // One member whose volume (owned by the pod's uid, as fsGroup makes it) holds old data.
    const peerPort = await freePort();
    const clientPort = await freePort();
    const m = { name: 'r0', peerURL: `http://127.0.0.1:${peerPort}`, clientURL: `http://127.0.0.1:${clientPort}` };
    contract([m]);
    const vol = join(tmp.path, 'volume');
    mkdirSync(join(vol, 'data', 'member', 'snap'), { recursive: true });
    writeFileSync(join(vol, 'data', 'member', 'snap', 'db'), 'old data that must survive');
    chownTree(vol, UID);
    const mount = ['-v', `${vol}:/var/lib/etcd`];
    const aside = await run(['agent', 'restore-member', '--phase', 'set-aside', '--recovery-id', 'r-image', '--member', 'r0', '-o', 'json'], mount);
    assert.equal(aside.code, 0, aside.stderr);
    const a = json({ code: aside.code, stdout: aside.stdout, stderr: aside.stderr });
    assert.equal(a.moved, true);
    const restore = await run(['agent', 'restore-member', '--phase', 'restore', '--recovery-id', 'r-image', '--member', 'r0', '--snapshot', created.name, '--token', 'image-it-restored', '--bump', '1000', '-o', 'json'], mount);
    assert.equal(restore.code, 0, restore.stderr);
    assert.equal(json({ code: restore.code, stdout: restore.stdout, stderr: restore.stderr }).snapshot, created.name);
    // The old data is still in the volume, set aside, byte for byte.
    assert.match(a.aside, /^\/var\/lib\/etcd\//, 'set aside inside the volume');
    assert.equal(readFileSync(join(vol, a.aside.slice('/var/lib/etcd/'.length), 'member', 'snap', 'db'), 'utf8'), 'old data that must survive');
    // The host's real etcd starts on what the image restored and serves every key.
    const etcd = spawn(binaries().etcd, ['--name', 'r0', '--data-dir', join(vol, 'data'), '--listen-peer-urls', m.peerURL, '--initial-advertise-peer-urls', m.peerURL,
      '--listen-client-urls', m.clientURL, '--advertise-client-urls', m.clientURL], { stdio: 'ignore' });
    try {
      let n = -1;
      for (let i = 0; i < 100 && n < 0; i++) {
        n = await countKeys(m.clientURL, 'k/').catch(() => -1);
        if (n < 0) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(n, 2_000);
    } finally {
      etcd.kill('SIGKILL');
    }
  });
});

function chownTree(dir: string, uid: number): void {
  chownSync(dir, uid, uid);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) chownTree(p, uid);
    else chownSync(p, uid, uid);
  }
}
