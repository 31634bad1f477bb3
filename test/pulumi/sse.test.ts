import { strict as assert } from 'node:assert';
import * as pulumi from '@pulumi/pulumi';
import { parseContract } from '@etcd-recover/core';
import { setupMocks, outputValue, type MockRecorder } from '../support/pulumi-mocks.js';

type Mod = typeof import('@etcd-recover/pulumi');

const base = {
  namespace: 'hcp-demo',
  agentImage: 'ghcr.io/etcd-recover/agent:0.1.0',
  backup: {
    bucket: { existing: 'etcd-backups' },
    endpoint: 'https://s3.storage.svc:9000',
    credentials: { accessKeyId: 'AKID', secretAccessKey: 'very-secret' },
  },
};

const KEY_FILE = '/etc/etcd-recover-sse-c/sse-c-key';

/** backup.sse: the contract says how objects are encrypted; an SSE-C key comes only from its Secret, mounted where the bucket is used. */
describe('EtcdCluster server-side encryption (Pulumi mocks)', () => {
  let mocks: MockRecorder;
  let mod: Mod;
  before(async () => {
    mocks = await setupMocks();
    mod = await import('@etcd-recover/pulumi');
  });
  beforeEach(() => mocks.reset());

  const deploy = async (sse: unknown, extra: Record<string, unknown> = {}) => {
    const c = new mod.EtcdCluster('etcd', { ...base, ...extra, backup: { ...base.backup, sse } } as never);
    await outputValue(c.contractName);
    await new Promise((r) => setTimeout(r, 50));
    const cm = mocks.find('kubernetes:core/v1:ConfigMap', 'etcd-recovery-contract').inputs;
    const crons = Object.fromEntries(mocks.ofType('kubernetes:batch/v1:CronJob').map((x) => [x.name.replace(/^etcd-/, ''), x.inputs.spec.jobTemplate.spec.template.spec]));
    const pod = mocks.find('kubernetes:apps/v1:StatefulSet', 'etcd-statefulset').inputs.spec.template.spec;
    return { raw: cm.data['contract.json'] as string, contract: parseContract(cm.data['contract.json'], 'test'), crons, pod };
  };
  /** The volume, mount and env var that carry the SSE-C key into one container of a pod spec. */
  const sseCOf = (pod: any, container: any) => {
    const env = (container.env ?? []).find((e: any) => e.name === 'ETCD_RECOVER_S3_SSE_C_KEY_FILE');
    const mount = env && (container.volumeMounts ?? []).find((m: any) => env.value.startsWith(`${m.mountPath}/`));
    const volume = mount && (pod.volumes ?? []).find((v: any) => v.name === mount.name);
    return { env, mount, volume };
  };

  it('SSE-KMS (with a key id) and SSE-S3 land in the contract, and mount nothing', async () => {
    const kms = await deploy({ mode: 'SSE-KMS', kmsKeyId: 'alias/etcd-backups' });
    assert.deepEqual(kms.contract.backup.sse, { mode: 'SSE-KMS', kmsKeyId: 'alias/etcd-backups' });
    for (const spec of [...Object.values(kms.crons), kms.pod]) {
      for (const ctr of [...spec.containers, ...(spec.initContainers ?? [])]) assert.equal(sseCOf(spec, ctr).env, undefined);
    }
    mocks.reset();
    assert.deepEqual((await deploy({ mode: 'SSE-KMS' })).contract.backup.sse, { mode: 'SSE-KMS' }, "the bucket's default KMS key");
    mocks.reset();
    assert.deepEqual((await deploy({ mode: 'SSE-S3' })).contract.backup.sse, { mode: 'SSE-S3' });
    mocks.reset();
    assert.equal((await deploy(undefined)).contract.backup.sse, undefined, 'no sse: the bucket default, nothing in the contract');
  });

  it('SSE-C: the contract names the Secret only; backup, verify, heal and member-init mount its one key read-only with the env var; defrag does not', async () => {
    const { raw, contract, crons, pod } = await deploy({ mode: 'SSE-C', customerKeySecret: 'etcd-sse-key' }, { defrag: { schedule: '0 3 * * 0' } });
    assert.deepEqual(contract.backup.sse, { mode: 'SSE-C', customerKeySecret: 'etcd-sse-key' });
    assert.ok(!/"key"/.test(raw), 'no key field in the contract');
    assert.deepEqual(Object.keys(crons).sort(), ['backup', 'defrag', 'drill', 'heal', 'verify']);
    const specs: [string, any, any][] = [
      ['backup', crons['backup'], crons['backup'].containers[0]],
      ['verify', crons['verify'], crons['verify'].containers[0]],
      ['heal', crons['heal'], crons['heal'].containers[0]],
      ['drill', crons['drill'], crons['drill'].containers[0]],
      ['member-init', pod, pod.initContainers[0]],
    ];
    for (const [what, spec, ctr] of specs) {
      const { env, mount, volume } = sseCOf(spec, ctr);
      assert.equal(env?.value, KEY_FILE, `${what}: ETCD_RECOVER_S3_SSE_C_KEY_FILE`);
      assert.equal(mount?.readOnly, true, `${what}: mounted read-only`);
      assert.deepEqual(volume?.secret, { secretName: 'etcd-sse-key', defaultMode: 0o440, items: [{ key: 'sse-c-key', path: 'sse-c-key' }] }, `${what}: the Secret's one key`);
    }
    const defrag = sseCOf(crons['defrag'], crons['defrag'].containers[0]);
    assert.equal(defrag.env, undefined, 'defrag talks to etcd only');
    assert.ok(!crons['defrag'].volumes.some((v: any) => v.secret?.secretName === 'etcd-sse-key'));
    assert.ok(!sseCOf(pod, pod.containers[0]).env, 'the etcd container itself gets no key');
    // The key is nowhere in the manifests (only the Secret's name is).
    const all = JSON.stringify(mocks.resources.map((x) => x.inputs));
    assert.ok(!/SSECustomerKey|"key":"[A-Za-z0-9+/]{43}="/.test(all));
  });

  it('SSE-C with the age key too: each has its own volume', async () => {
    const c = new mod.EtcdCluster('etcd', { ...base, backup: { ...base.backup, encryption: { secretName: 'etcd-age' }, sse: { mode: 'SSE-C', customerKeySecret: 'etcd-sse-key' } } } as never);
    await outputValue(c.contractName);
    await new Promise((r) => setTimeout(r, 50));
    const verify = mocks.find('kubernetes:batch/v1:CronJob', 'etcd-verify').inputs.spec.jobTemplate.spec.template.spec;
    const names = verify.volumes.map((v: any) => v.name);
    assert.equal(new Set(names).size, names.length, `distinct volume names: ${names.join(', ')}`);
    const env = Object.fromEntries(verify.containers[0].env.map((e: any) => [e.name, e.value]));
    assert.equal(env['ETCD_RECOVER_S3_SSE_C_KEY_FILE'], KEY_FILE);
    assert.ok(env['ETCD_RECOVER_AGE_IDENTITY_FILE']);
  });

  it('an SSE-C endpoint given as a Pulumi Output is not second-guessed at resolve time', async () => {
    const { contract } = await deploy({ mode: 'SSE-C', customerKeySecret: 'etcd-sse-key' });
    assert.equal(contract.backup.endpoint, 'https://s3.storage.svc:9000');
    mocks.reset();
    const c = new mod.EtcdCluster('etcd', { ...base, backup: { ...base.backup, endpoint: pulumi.output('http://minio.storage:9000'), sse: { mode: 'SSE-C', customerKeySecret: 'etcd-sse-key' } } } as never);
    await outputValue(c.contractName);
  });

  describe('rejects bad input before any resource exists, naming the argument', () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['SSE-C over an http endpoint', { endpoint: 'http://minio.storage:9000', sse: { mode: 'SSE-C', customerKeySecret: 'etcd-sse-key' } }, /EtcdCluster "etcd": backup\.sse: SSE-C needs an https endpoint: S3 refuses customer keys over plain HTTP, and backup\.endpoint is "http:\/\/minio\.storage:9000"/],
      ['SSE-KMS with an empty key id', { sse: { mode: 'SSE-KMS', kmsKeyId: '' } }, /EtcdCluster "etcd": backup\.sse\.kmsKeyId: is empty/],
      ['SSE-KMS with a blank key id', { sse: { mode: 'SSE-KMS', kmsKeyId: '  ' } }, /backup\.sse\.kmsKeyId: is empty/],
      ['an unknown mode', { sse: { mode: 'AES256' } }, /backup\.sse\.mode: "AES256" is not one of SSE-S3, SSE-KMS, SSE-C/],
      ['SSE-C without its Secret', { sse: { mode: 'SSE-C' } }, /backup\.sse\.customerKeySecret: is required for SSE-C/],
      ['SSE-C with a Secret name Kubernetes rejects', { sse: { mode: 'SSE-C', customerKeySecret: 'Bad_Name' } }, /backup\.sse\.customerKeySecret: "Bad_Name" is not a Secret name/],
      ['a key id on SSE-S3', { sse: { mode: 'SSE-S3', kmsKeyId: 'alias/x' } }, /backup\.sse\.kmsKeyId: is for SSE-KMS, but the mode is SSE-S3/],
    ];
    for (const [what, backup, re] of cases) {
      it(what, async () => {
        assert.throws(() => new mod.EtcdCluster('etcd', { ...base, backup: { ...base.backup, ...backup } } as never), re);
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(mocks.resources.filter((r) => r.custom).length, 0, 'no resource was registered');
      });
    }

    it('an inline SSE-C key is refused without quoting it', async () => {
      const key = Buffer.alloc(32, 7).toString('base64');
      assert.throws(
        () => new mod.EtcdCluster('etcd', { ...base, backup: { ...base.backup, sse: { mode: 'SSE-C', customerKeySecret: 'etcd-sse-key', key } } } as never),
        (e: Error) => /backup\.sse\.key: an SSE-C key is never given inline/.test(e.message) && !e.message.includes(key),
      );
    });
  });
});
