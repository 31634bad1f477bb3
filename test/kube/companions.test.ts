import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { Etcd3 } from 'etcd3';
import { layout, S3ObjectStore, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { applyManifests, waitFor, type ControlPlane } from '../support/kube/index.js';
import { declaredCluster, loseMembers, memberIPs } from '../support/declared-cluster.js';
import { hostedApiserverManifests, hostedRequest, waitHostedReady } from '../support/hosted-apiserver.js';
import { stopSandbox, tempDir } from '../support/sandbox.js';
import { json, runCli, type CliResult } from '../support/cli.js';

const NS = 'hcp-c';
const MEMBERS = ['etcd-0', 'etcd-1', 'etcd-2'];
const TOKEN = 'hosted-admin-token-c';
const TENANT_SECRET = `tenant-password-${Math.random().toString(36).slice(2)}`;

/**
 * Issue 14's "namespace rebuilt from scratch": encrypted backups taken in the cluster carry the
 * companion Secrets a hosted control plane cannot start without (its encryption configuration, its
 * service-account key, the bucket credentials, the age key); every Secret and PVC of the namespace
 * is lost; `quorum --restore-companions` with the break-glass key brings the hosted kube-apiserver
 * back on the restored etcd, reading the Secrets it had, encrypted at rest with its original key.
 */
describe('companion resources and encrypted backups on Kubernetes (real control plane)', function () {
  this.timeout(900_000);
  let cp: ControlPlane;
  let store: Sandbox;
  let kube: string[];
  const tmp = tempDir();
  let breakGlass: string;
  let operatorIdentity: string;
  let backup: SnapshotRecord;
  const cli = (args: string[]): Promise<CliResult> => runCli([...args, ...kube], { timeoutMs: 900_000 });
  const bucket = () => new S3ObjectStore(store.s3Config());

  before(async function () {
    this.timeout(2_400_000); // on a cold cache this waits for setup's background build of the binaries
    operatorIdentity = await generateX25519Identity();
    breakGlass = await generateX25519Identity();
    const recipients = `${await identityToRecipient(operatorIdentity)}\n# break-glass, kept offline\n${await identityToRecipient(breakGlass)}\n`;
    ({ cp, store } = await declaredCluster(
      NS,
      {
        autoHeal: { enabled: false },
        dependents: [{ kind: 'Deployment', name: 'kube-apiserver', replicas: 1 }],
        companions: { secrets: ['hosted-sa', 'hosted-encryption'], configMaps: ['hosted-settings'] },
      },
      {
        // Only the backups the test takes: a scheduled one at :00/:30 would be a newer restore point.
        backup: { encryption: { secretName: 'etcd-age' }, schedule: '0 0 1 1 *', verifySchedule: '0 0 1 1 *' },
        beforeApply: async (c) => {
          const core = c.kubeConfig().makeApiClient(CoreV1Api);
          await core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: 'etcd-age' }, stringData: { recipients, identity: `${operatorIdentity}\n` } } });
          await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'hosted-settings' }, data: { 'feature-gates': 'A=true' } } });
        },
      },
    ));
    await applyManifests(cp.kubeConfig(), hostedApiserverManifests({ namespace: NS, members: MEMBERS, token: TOKEN }));
    kube = ['--kubeconfig', cp.kubeconfigPath, '-n', NS];
    const apps = cp.kubeConfig().makeApiClient(AppsV1Api);
    await waitFor('etcd 3/3 ready', async () => (await apps.readNamespacedStatefulSet({ namespace: NS, name: 'etcd' })).status?.readyReplicas === 3, 300_000, 500);
    await waitHostedReady(cp, NS, TOKEN);
  });
  after(async () => {
    await cp?.stop();
    await stopSandbox(store);
    tmp.remove();
  });

  it('a backup taken in the cluster is encrypted and carries the companions; neither object reveals a key', async () => {
    await hostedRequest(cp, NS, TOKEN, 'POST', '/api/v1/namespaces/default/secrets', { metadata: { name: 'tenant-db' }, stringData: { password: TENANT_SECRET } });
    // The hosted API server encrypts Secrets at rest with its aescbc key: etcd holds no plaintext.
    const ips = await memberIPs(cp, NS, MEMBERS);
    const etcd = new Etcd3({ hosts: ips.map((ip) => `http://${ip}:2379`) });
    try {
      const raw = await etcd.get('/registry/secrets/default/tenant-db').buffer();
      assert.ok(raw?.subarray(0, 18).toString() === 'k8s:enc:aescbc:v1:', 'stored encrypted by the hosted API server');
    } finally {
      etcd.close();
    }
    const r = await cli(['backup', 'create', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    backup = json<SnapshotRecord>(r);
    assert.equal(backup.encryption?.recipients.length, 2, 'the operator key and the break-glass key');
    const names = backup.companions!.items.map((i) => `${i.kind}/${i.name}`).sort();
    assert.deepEqual(names, ['ConfigMap/hosted-settings', 'Secret/etcd-age', 'Secret/etcd-backup-credentials', 'Secret/hosted-encryption', 'Secret/hosted-sa']);
    assert.deepEqual(backup.companions!.missing, []);
    // Neither object in the bucket shows a key, a token or a value of the cluster.
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    const sa = await core.readNamespacedSecret({ namespace: NS, name: 'hosted-sa' });
    const enc = await core.readNamespacedSecret({ namespace: NS, name: 'hosted-encryption' });
    const aescbc = /secret: (\S+)/.exec(Buffer.from(enc.data!['config.yaml']!, 'base64').toString())![1]!;
    for (const key of [layout.snapshotObject('etcd', backup.name), layout.companionsObject('etcd', backup.name)]) {
      const got = (await bucket().read(key))!.body;
      assert.equal(got.subarray(0, 22).toString(), 'age-encryption.org/v1\n', key);
      for (const needle of [aescbc, TOKEN, 'PRIVATE KEY', operatorIdentity, sa.data!['sa.key']!, '/registry/secrets', 'feature-gates']) {
        assert.equal(got.indexOf(needle), -1, `${key} does not contain ${needle.slice(0, 24)}…`);
      }
    }
    // The backup job saw only the public recipients: its pod template mounts no identity.
    const cron = await cp.kubeConfig().makeApiClient((await import('@kubernetes/client-node')).BatchV1Api).readNamespacedCronJob({ namespace: NS, name: 'etcd-backup' });
    const vol = cron.spec!.jobTemplate.spec!.template.spec!.volumes!.find((v) => v.secret?.secretName === 'etcd-age')!;
    assert.deepEqual(vol.secret!.items?.map((i) => ({ key: i.key, path: i.path })), [{ key: 'recipients', path: 'recipients' }]);
  });

  it('the namespace rebuilt from scratch (every Secret and PVC gone): quorum --restore-companions brings the hosted API server back with its Secrets', async () => {
    const core = cp.kubeConfig().makeApiClient(CoreV1Api);
    // A companion someone already recreated by hand, differently: reported, never overwritten.
    await core.replaceNamespacedConfigMap({ namespace: NS, name: 'hosted-settings', body: { metadata: { name: 'hosted-settings' }, data: { 'feature-gates': 'A=false' } } });
    for (const s of (await core.listNamespacedSecret({ namespace: NS })).items) await core.deleteNamespacedSecret({ namespace: NS, name: s.metadata!.name! });
    await loseMembers(cp, NS, MEMBERS);
    for (const p of (await core.listNamespacedPod({ namespace: NS, labelSelector: 'app=kube-apiserver' })).items) await core.deleteNamespacedPod({ namespace: NS, name: p.metadata!.name!, gracePeriodSeconds: 0 });

    // At 3 a.m.: the break-glass key and the bucket credentials from the operator's safe.
    const keyFile = join(tmp.path, 'break-glass.key');
    writeFileSync(keyFile, `${breakGlass}\n`, { mode: 0o600 });
    const s3 = store.s3Config();
    const credsFile = join(tmp.path, 'creds');
    writeFileSync(credsFile, `AWS_ACCESS_KEY_ID=${s3.credentials!.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${s3.credentials!.secretAccessKey}\n`, { mode: 0o600 });
    const flags = ['--restore-companions', '--age-identity-file', keyFile, '--s3-credentials-file', credsFile];

    const dry = await cli(['quorum', '--dry-run', '-o', 'json', ...flags]);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = json(dry);
    assert.equal(plan.steps[0].id, 'restore-companions', 'the Secrets the Jobs mount come back first');
    assert.equal(plan.companions.from, backup.name);
    assert.equal(plan.restorePoint.name, backup.name);

    const run = await cli(['quorum', '--yes', '-o', 'json', '--timeout', '300', ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const report = json(run);
    const by = Object.fromEntries(report.companions.map((c: { name: string; action: string }) => [c.name, c.action]));
    assert.deepEqual(by, { 'hosted-sa': 'created', 'hosted-encryption': 'created', 'etcd-backup-credentials': 'created', 'etcd-age': 'created', 'hosted-settings': 'differs' });
    assert.equal((await core.readNamespacedConfigMap({ namespace: NS, name: 'hosted-settings' })).data?.['feature-gates'], 'A=false', 'the one that differed is kept as it is');
    const restored = await core.readNamespacedSecret({ namespace: NS, name: 'hosted-encryption' });
    assert.equal(restored.metadata?.annotations?.['etcd-recover.io/restored-from'], backup.name);

    // The hosted kube-apiserver starts on the restored etcd with its original encryption configuration
    // and reads the Secret it had (which only that aescbc key decrypts).
    await waitHostedReady(cp, NS, TOKEN, 300_000);
    const secret = await hostedRequest(cp, NS, TOKEN, 'GET', '/api/v1/namespaces/default/secrets/tenant-db');
    assert.equal(Buffer.from(secret.data.password, 'base64').toString(), TENANT_SECRET);
  });
});
