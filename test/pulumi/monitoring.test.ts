import { strict as assert } from 'node:assert';
import { parseContract } from '@etcd-recover/core';
import { setupMocks, outputValue, type MockRecorder } from '../support/pulumi-mocks.js';

type Mod = typeof import('@etcd-recover/pulumi');

const base = {
  namespace: 'hcp-demo',
  agentImage: 'ghcr.io/etcd-recover/agent:0.1.0',
  backup: { bucket: { existing: 'etcd-backups' }, endpoint: 'https://s3.storage.svc:9000', credentials: { accessKeyId: 'AKID', secretAccessKey: 'very-secret' } },
};

/** Issue 17 on the component: reporting rights, the drill CronJob, the exporter, and the Prometheus objects only on request. */
describe('EtcdCluster monitoring, reporting and the scheduled drill (Pulumi mocks)', () => {
  let mocks: MockRecorder;
  let mod: Mod;
  before(async () => {
    mocks = await setupMocks();
    mod = await import('@etcd-recover/pulumi');
  });
  beforeEach(() => mocks.reset());

  const deploy = async (extra: Record<string, unknown> = {}) => {
    const c = new mod.EtcdCluster('etcd', { ...base, ...extra } as never);
    await outputValue(c.contractName);
    await new Promise((r) => setTimeout(r, 50));
    const crons = Object.fromEntries(mocks.ofType('kubernetes:batch/v1:CronJob').map((x) => [x.name.replace(/^etcd-/, ''), x.inputs]));
    const roles = Object.fromEntries(mocks.ofType('kubernetes:rbac.authorization.k8s.io/v1:Role').map((x) => [x.name.replace(/^etcd-/, ''), x.inputs.rules]));
    const contract = parseContract(mocks.find('kubernetes:core/v1:ConfigMap', 'etcd-recovery-contract').inputs.data['contract.json'], 'test');
    const custom = mocks.resources.filter((x) => x.type.startsWith('kubernetes:monitoring.coreos.com'));
    return { crons, roles, contract, custom };
  };
  const envOf = (cron: any, name: string) => cron.spec.jobTemplate.spec.template.spec.containers[0].env.find((e: any) => e.name === name)?.value;

  it('every job reports as itself and may create Events and patch only the status ConfigMap', async () => {
    const { crons, roles, contract } = await deploy();
    assert.deepEqual(contract.reporting, { contractConfigMap: 'etcd-recovery-contract', statusConfigMap: 'etcd-recovery-status' });
    for (const job of ['backup', 'verify', 'heal', 'drill']) {
      assert.equal(envOf(crons[job], 'ETCD_RECOVER_JOB'), job);
      const rules = roles[job];
      assert.ok(rules.some((r: any) => r.resources[0] === 'events' && r.verbs.join() === 'create'), `${job} creates Events`);
      assert.ok(rules.some((r: any) => r.resources[0] === 'configmaps' && r.resourceNames?.join() === 'etcd-recovery-status' && r.verbs.join() === 'get,patch'), `${job} patches its status`);
      assert.ok(!rules.some((r: any) => r.resources[0] === 'secrets'), `${job} reads no Secret`);
    }
    assert.equal(crons['backup'].spec.jobTemplate.spec.template.spec.automountServiceAccountToken, true);
  });

  it('the drill CronJob restores into an emptyDir bounded by ephemeralStorage, daily by default', async () => {
    const { crons } = await deploy({ drill: { members: 3, ephemeralStorage: '2Gi' } });
    const d = crons['drill'];
    assert.equal(d.spec.schedule, '30 4 * * *');
    assert.equal(d.spec.jobTemplate.spec.backoffLimit, 0, 'a failed drill is reported, not retried');
    const pod = d.spec.jobTemplate.spec.template.spec;
    assert.deepEqual(pod.containers[0].args, ['backup', 'drill', '--quiet', '--members', '3']);
    const vol = pod.volumes.find((v: any) => v.name === 'drill');
    assert.deepEqual(vol.emptyDir, { sizeLimit: '2Gi' });
    assert.equal(envOf(d, 'TMPDIR'), '/var/tmp/drill');
    assert.equal(pod.containers[0].securityContext.readOnlyRootFilesystem, true);
    assert.equal(pod.volumes.some((v: any) => v.persistentVolumeClaim), false, 'no PVC');
    mocks.reset();
    assert.equal((await deploy({ drill: { enabled: false } })).crons['drill'], undefined);
  });

  it('the exporter runs with a scrape-annotated Service; ServiceMonitor and PrometheusRule only when asked (no CRDs needed by default)', async () => {
    const plain = await deploy();
    assert.deepEqual(plain.custom, [], 'a cluster without the Prometheus CRDs still applies');
    const dep = mocks.find('kubernetes:apps/v1:Deployment', 'etcd-exporter').inputs;
    assert.deepEqual(dep.spec.template.spec.containers[0].args, ['agent', 'exporter', '--listen', ':9479']);
    assert.equal(dep.spec.strategy.type, 'Recreate');
    const svc = mocks.find('kubernetes:core/v1:Service', 'etcd-exporter').inputs;
    assert.equal(svc.metadata.annotations['prometheus.io/scrape'], 'true');
    assert.deepEqual(plain.roles['exporter'], [
      { apiGroups: ['batch'], resources: ['jobs'], verbs: ['list'] },
      { apiGroups: ['batch'], resources: ['cronjobs'], verbs: ['get'] },
    ]);
    mocks.reset();
    const withCrds = await deploy({ monitoring: { serviceMonitor: true, prometheusRule: true, rpo: '45m' } });
    const kinds = withCrds.custom.map((x) => x.inputs.kind).sort();
    assert.deepEqual(kinds, ['PrometheusRule', 'ServiceMonitor']);
    const rules = withCrds.custom.find((x) => x.inputs.kind === 'PrometheusRule')!.inputs.spec.groups[0].rules;
    const names = rules.map((r: any) => r.alert);
    for (const a of ['EtcdRecoverBackupStale', 'EtcdRecoverVerificationFailed', 'EtcdRecoverDrillFailed', 'EtcdRecoverMemberDown', 'EtcdRecoverQuorumAtRisk', 'EtcdRecoverBackupJobFailing']) assert.ok(names.includes(a), a);
    for (const r of rules) assert.match(r.annotations.runbook_url, /\/docs\/runbooks\/[a-z-]+\.md$/, `${r.alert} links its runbook`);
    assert.ok(mocks.find('kubernetes:apps/v1:Deployment', 'etcd-exporter').inputs.spec.template.spec.containers[0].args.includes('45m'));
    // Continuous archiving is on by default: its alerts come with it (lag: ten 1 s intervals), and go with it.
    const byName = Object.fromEntries(rules.map((r: any) => [r.alert, r]));
    assert.equal(byName['EtcdRecoverArchiveDown'].expr, 'etcd_recover_archive_up{cluster="etcd"} == 0');
    assert.equal(byName['EtcdRecoverArchiveLagging'].expr, 'etcd_recover_archive_lag_seconds{cluster="etcd"} > 10');
    assert.match(byName['EtcdRecoverArchiveLagging'].annotations.runbook_url, /point-in-time\.md$/);
    mocks.reset();
    const noArchive = await deploy({ monitoring: { prometheusRule: true }, archive: { enabled: false } });
    const without = noArchive.custom.find((x) => x.inputs.kind === 'PrometheusRule')!.inputs.spec.groups[0].rules.map((r: any) => r.alert);
    assert.ok(!without.some((a: string) => a.startsWith('EtcdRecoverArchive')), without.join(', '));
    assert.ok(without.includes('EtcdRecoverBackupStale'));
  });

  it('bad input names the argument', async () => {
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, drill: { schedule: 'daily' } } as never), /drill.schedule/);
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, drill: { members: 9 } } as never), /drill.members: must be 1 to 7/);
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, drill: { ephemeralStorage: 'lots' } } as never), /drill.ephemeralStorage/);
    assert.throws(() => new mod.EtcdCluster('etcd', { ...base, monitoring: { rpo: 'soon' } } as never), /monitoring.rpo/);
  });
});
