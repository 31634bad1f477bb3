import { strict as assert } from 'node:assert';
import { setupMocks, outputValue, type MockRecorder } from '../support/pulumi-mocks.js';

type Mod = typeof import('@etcd-recover/pulumi');

const base = {
  namespace: 'hcp-demo',
  agentImage: 'ghcr.io/etcd-recover/agent:0.1.0',
  backup: {
    bucket: { existing: 'etcd-backups' },
    endpoint: 'http://minio.storage:9000',
    credentials: { accessKeyId: 'AKID', secretAccessKey: 'very-secret' },
  },
};

/** The init container reads the bucket the way the backup CronJobs do (docs/recovery-contract.md, member-init). */
describe('EtcdCluster member-init container (Pulumi mocks)', () => {
  let mocks: MockRecorder;
  let mod: Mod;
  before(async () => {
    mocks = await setupMocks();
    mod = await import('@etcd-recover/pulumi');
  });
  beforeEach(() => mocks.reset());

  const podSpec = async (args: Record<string, unknown> = {}) => {
    const c = new mod.EtcdCluster('etcd', { ...base, ...args } as never);
    await outputValue(c.contractName);
    await new Promise((r) => setTimeout(r, 50));
    return mocks.find('kubernetes:apps/v1:StatefulSet', 'etcd-statefulset').inputs.spec.template.spec;
  };

  it('gets the recovery contract and the backup credentials the backup CronJob gets, and the peer wait (default 30 s)', async () => {
    const pod = await podSpec();
    const init = pod.initContainers[0];
    const cron = mocks.find('kubernetes:batch/v1:CronJob', 'etcd-backup').inputs.spec.jobTemplate.spec.template.spec;
    const env = Object.fromEntries(init.env.map((e: any) => [e.name, e]));
    const cronEnv = Object.fromEntries(cron.containers[0].env.map((e: any) => [e.name, e]));
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'ETCD_RECOVER_CONTRACT']) assert.deepEqual(env[k], cronEnv[k], k);
    assert.equal(env['ETCD_RECOVER_CONTRACT'].value, '/etc/etcd-recover/contract.json');
    assert.ok(init.volumeMounts.some((m: any) => m.name === 'contract' && m.mountPath === '/etc/etcd-recover' && m.readOnly));
    const vol = pod.volumes.find((v: any) => v.name === 'contract');
    assert.deepEqual(vol, cron.volumes.find((v: any) => v.name === 'contract'));
    assert.ok(init.args.includes('--peer-wait=30'));
  });

  it('runs as the etcd data\'s owner (root, as the etcd container), no privilege escalation, read-only root filesystem', async () => {
    // The agent image's own user (65532) cannot write etcd's config into a volume the etcd container owns
    // (test/kube/agent-image.test.ts runs member-init from the real image).
    const init = (await podSpec()).initContainers[0];
    assert.deepEqual(init.securityContext, { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
  });

  it('peerWaitSeconds sets --peer-wait; a negative or fractional one is rejected naming the argument', async () => {
    assert.ok((await podSpec({ peerWaitSeconds: 90 })).initContainers[0].args.includes('--peer-wait=90'));
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, peerWaitSeconds: -1 } as never), /EtcdCluster "etcd": peerWaitSeconds: must be a whole number of seconds ≥ 0 \(got -1\)/);
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, peerWaitSeconds: 1.5 } as never), /peerWaitSeconds/);
  });

  // autoRestore: off by default (the init container is exactly as above), on adds --auto-restore.
  it('autoRestore is off by default, and true adds exactly --auto-restore to member-init', async () => {
    const off = (await podSpec()).initContainers[0].args as string[];
    assert.ok(!off.some((a) => a.startsWith('--auto-restore')));
    mocks.reset();
    assert.deepEqual((await podSpec({ autoRestore: false })).initContainers[0].args, off);
    mocks.reset();
    assert.deepEqual((await podSpec({ autoRestore: true })).initContainers[0].args, [...off, '--auto-restore']);
  });
});
