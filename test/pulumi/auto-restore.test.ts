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

/** autoRestore on the component: off by default (the init container is exactly today's), on adds --auto-restore. */
describe('EtcdCluster autoRestore (Pulumi mocks)', () => {
  let mocks: MockRecorder;
  let mod: Mod;
  before(async () => {
    mocks = await setupMocks();
    mod = await import('@etcd-recover/pulumi');
  });
  beforeEach(() => mocks.reset());

  const initArgs = async (args: Record<string, unknown> = {}): Promise<string[]> => {
    const c = new mod.EtcdCluster('etcd', { ...base, ...args } as never);
    await outputValue(c.contractName);
    await new Promise((r) => setTimeout(r, 50));
    return mocks.find('kubernetes:apps/v1:StatefulSet', 'etcd-statefulset').inputs.spec.template.spec.initContainers[0].args;
  };

  it('off by default: member-init gets no --auto-restore', async () => {
    const off = await initArgs();
    assert.ok(!off.some((a) => a.startsWith('--auto-restore')));
    mocks.reset();
    assert.deepEqual(await initArgs({ autoRestore: false }), off);
  });

  it('autoRestore: true adds exactly --auto-restore to member-init', async () => {
    const off = await initArgs();
    mocks.reset();
    const on = await initArgs({ autoRestore: true });
    assert.deepEqual(on, [...off, '--auto-restore']);
  });
});
