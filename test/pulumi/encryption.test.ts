import { strict as assert } from 'node:assert';
import { parseContract } from '@etcd-recover/core';
import { setupMocks, outputValue, type MockRecorder } from '../support/pulumi-mocks.js';

type Mod = typeof import('@etcd-recover/pulumi');

const base = {
  namespace: 'hcp-demo',
  agentImage: 'ghcr.io/etcd-recover/agent:0.1.0',
  tls: { serverSecret: 'etcd-server-tls', clientSecret: 'etcd-client-tls' },
  backup: {
    bucket: { existing: 'etcd-backups' },
    endpoint: 'https://s3.storage.svc:9000',
    credentials: { accessKeyId: 'AKID', secretAccessKey: 'very-secret' },
    encryption: { secretName: 'etcd-age' },
  },
};

/**
 * backup.encryption and companions: least privilege by job — the backup job sees the public
 * recipients only (and, with companions, may get exactly the named Secrets/ConfigMaps); verify and
 * member-init may open backups; defrag and heal see no key at all.
 */
describe('EtcdCluster backup encryption and companions (Pulumi mocks)', () => {
  let mocks: MockRecorder;
  let mod: Mod;
  before(async () => {
    mocks = await setupMocks();
    mod = await import('@etcd-recover/pulumi');
  });
  beforeEach(() => mocks.reset());

  const deploy = async (extra: Record<string, unknown> = {}) => {
    const c = new mod.EtcdCluster('etcd', { ...base, autoHeal: { enabled: true }, defrag: { schedule: '0 3 * * 0' }, ...extra } as never);
    await outputValue(c.contractName);
    await new Promise((r) => setTimeout(r, 50));
    const cm = mocks.find('kubernetes:core/v1:ConfigMap', 'etcd-recovery-contract').inputs;
    const crons = Object.fromEntries(mocks.ofType('kubernetes:batch/v1:CronJob').map((x) => [x.name.replace(/^etcd-/, ''), x.inputs.spec.jobTemplate.spec.template.spec]));
    const pod = mocks.find('kubernetes:apps/v1:StatefulSet', 'etcd-statefulset').inputs.spec.template.spec;
    const roles = Object.fromEntries(mocks.ofType('kubernetes:rbac.authorization.k8s.io/v1:Role').map((x) => [x.name.replace(/^etcd-/, ''), x.inputs.rules]));
    return { contract: parseContract(cm.data['contract.json'], 'test'), crons, pod, roles };
  };
  const ageOf = (pod: any, container: any) => ({
    volume: (pod.volumes ?? []).find((v: any) => v.secret?.secretName === 'etcd-age'),
    recipients: (container.env ?? []).find((e: any) => e.name === 'ETCD_RECOVER_AGE_RECIPIENTS_FILE')?.value,
    identity: (container.env ?? []).find((e: any) => e.name === 'ETCD_RECOVER_AGE_IDENTITY_FILE')?.value,
  });

  it('the contract names the key Secret; the backup job mounts only its recipients, verify and member-init the identity too', async () => {
    const { contract, crons, pod } = await deploy();
    assert.deepEqual(contract.backup.encryption, { secretName: 'etcd-age' });
    const backup = ageOf(crons['backup'], crons['backup'].containers[0]);
    assert.deepEqual(backup.volume.secret.items, [{ key: 'recipients', path: 'recipients' }]);
    assert.ok(backup.recipients && !backup.identity, 'the backup job cannot decrypt');
    const verify = ageOf(crons['verify'], crons['verify'].containers[0]);
    assert.equal(verify.volume.secret.items, undefined);
    assert.ok(verify.recipients && verify.identity);
    const init = ageOf(pod, pod.initContainers[0]);
    assert.ok(init.volume && init.identity, 'member-init opens backups for the start-up decision and auto-restore');
    assert.equal(ageOf(pod, pod.containers[0]).identity, undefined, 'etcd itself sees no key');
    for (const job of ['heal', 'defrag']) assert.equal(ageOf(crons[job], crons[job].containers[0]).volume, undefined, `${job} sees no key`);
  });

  it('companions: the declared names plus the component\'s own Secrets, and the backup job may get exactly those', async () => {
    const { contract, roles, crons } = await deploy({ companions: { secrets: ['hosted-encryption'], configMaps: ['hosted-settings'] } });
    assert.deepEqual(contract.companions, {
      secrets: ['hosted-encryption', 'etcd-server-tls', 'etcd-client-tls', 'etcd-backup-credentials', 'etcd-age'],
      configMaps: ['hosted-settings'],
    });
    assert.deepEqual(roles['backup'].slice(0, 2), [
      { apiGroups: [''], resources: ['secrets'], resourceNames: contract.companions!.secrets, verbs: ['get'] },
      { apiGroups: [''], resources: ['configmaps'], resourceNames: ['hosted-settings'], verbs: ['get'] },
    ]);
    assert.ok(!roles['verify'].some((r: any) => r.resources.includes('secrets')), 'verify reads no Secret');
    assert.equal(crons['backup'].automountServiceAccountToken, true);
  });

  it('without companions the backup job may read no Secret or ConfigMap (only report its outcome)', async () => {
    const { roles, contract } = await deploy();
    assert.ok(!roles['backup'].some((r: any) => r.resources.includes('secrets') || (r.resources.includes('configmaps') && r.verbs.includes('get') && !['etcd-recovery-status', 'etcd-recovery-contract'].includes(r.resourceNames?.[0]))));
    assert.equal(contract.companions, undefined);
  });

  it('bad input names the argument: companions without encryption, a bad Secret name', async () => {
    const { encryption: _none, ...plainBackup } = base.backup;
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, backup: plainBackup, companions: { secrets: ['hosted-encryption'] } } as never), /companions: companion resources hold the cluster's keys and are never stored unencrypted: set backup.encryption/);
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, companions: { secrets: ['Not_A_Name'] } } as never), /companions: "Not_A_Name" is not a Secret or ConfigMap name/);
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, backup: { ...base.backup, encryption: { secretName: '' } } } as never), /backup.encryption.secretName/);
  });
});
