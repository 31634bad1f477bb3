import { strict as assert } from 'node:assert';
import * as pulumi from '@pulumi/pulumi';
import { parseContract } from '@etcd-recover/core';
import { setupMocks, outputValue, type MockRecorder } from '../support/pulumi-mocks.js';

type Mod = typeof import('@etcd-recover/pulumi');

const T = {
  sts: 'kubernetes:apps/v1:StatefulSet',
  svc: 'kubernetes:core/v1:Service',
  pdb: 'kubernetes:policy/v1:PodDisruptionBudget',
  secret: 'kubernetes:core/v1:Secret',
  cm: 'kubernetes:core/v1:ConfigMap',
  cron: 'kubernetes:batch/v1:CronJob',
  sa: 'kubernetes:core/v1:ServiceAccount',
  role: 'kubernetes:rbac.authorization.k8s.io/v1:Role',
  binding: 'kubernetes:rbac.authorization.k8s.io/v1:RoleBinding',
  bucket: 'pulumi-nodejs:dynamic/etcd-recover:S3Bucket',
};

const base = {
  namespace: 'hcp-demo',
  agentImage: 'ghcr.io/etcd-recover/agent:0.1.0',
  backup: {
    bucket: { create: { name: 'etcd-backups', expirationDays: 45 } },
    endpoint: 'http://minio.storage:9000',
    credentials: { accessKeyId: 'AKID', secretAccessKey: 'very-secret' },
  },
};

/** Lets every registration settle. */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe('EtcdCluster component (Pulumi mocks)', () => {
  let mocks: MockRecorder;
  let mod: Mod;
  before(async () => {
    mocks = await setupMocks();
    mod = await import('@etcd-recover/pulumi');
  });
  beforeEach(() => mocks.reset());

  it('declares the etcd StatefulSet, services, disruption budget and secret with the documented defaults', async () => {
    const c = new mod.EtcdCluster('etcd', base);
    await outputValue(c.contractName);
    await settle();
    const sts = mocks.find(T.sts, 'etcd-statefulset').inputs;
    assert.equal(sts.metadata.name, 'etcd');
    assert.equal(sts.metadata.namespace, 'hcp-demo');
    assert.equal(sts.spec.replicas, 3);
    assert.equal(sts.spec.podManagementPolicy, 'Parallel');
    assert.equal(sts.spec.serviceName, 'etcd-discovery');
    assert.equal(sts.spec.volumeClaimTemplates[0].metadata.name, 'data');
    assert.equal(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage, '8Gi');
    const pod = sts.spec.template.spec;
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.initContainers[0].image, 'ghcr.io/etcd-recover/agent:0.1.0');
    assert.deepEqual(pod.initContainers[0].args.slice(0, 2), ['agent', 'member-init']);
    assert.ok(pod.initContainers[0].args.includes('--initial-cluster=etcd-0=http://etcd-0.etcd-discovery.hcp-demo.svc:2380,etcd-1=http://etcd-1.etcd-discovery.hcp-demo.svc:2380,etcd-2=http://etcd-2.etcd-discovery.hcp-demo.svc:2380'));
    const etcd = pod.containers[0];
    assert.equal(etcd.image, 'registry.k8s.io/etcd:3.6.16-0');
    assert.deepEqual(etcd.args, ['--config-file=/var/lib/etcd/etcd.conf.yml']);
    assert.equal(etcd.readinessProbe.httpGet.path, '/readyz');
    assert.equal(etcd.readinessProbe.httpGet.port, 2381);
    assert.ok(pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution);
    const headless = mocks.find(T.svc, 'etcd-discovery').inputs;
    assert.equal(headless.spec.clusterIP, 'None');
    assert.equal(headless.spec.publishNotReadyAddresses, true);
    assert.equal(mocks.find(T.svc, 'etcd-client').inputs.spec.ports[0].port, 2379);
    assert.equal(mocks.find(T.pdb, 'etcd-pdb').inputs.spec.maxUnavailable, 1);
    const secret = mocks.find(T.secret, 'etcd-backup-credentials').inputs;
    assert.ok(pulumi.runtime.isRpcSecret(secret.stringData), "the credentials stay Pulumi secrets");
    assert.equal(pulumi.runtime.unwrapRpcSecret(secret.stringData).AWS_SECRET_ACCESS_KEY, "very-secret");
  });

  it('records the recovery contract the plugin reads, with every name it needs', async () => {
    const c = new mod.EtcdCluster('etcd', { ...base, dependents: [{ kind: 'Deployment', name: 'kube-apiserver', replicas: 2 }] });
    assert.equal(await outputValue(c.contractName), 'etcd-recovery-contract');
    await settle();
    const cm = mocks.find(T.cm, 'etcd-recovery-contract').inputs;
    assert.equal(cm.metadata.labels['etcd-recover.io/contract'], 'v1');
    assert.equal(cm.metadata.labels['etcd-recover.io/cluster'], 'etcd');
    const contract = parseContract(cm.data['contract.json'], 'test');
    assert.equal(contract.etcd.statefulSet, 'etcd');
    assert.deepEqual(contract.etcd.members.map((m) => m.pvc), ['data-etcd-0', 'data-etcd-1', 'data-etcd-2']);
    assert.equal(contract.backup.bucket, 'etcd-backups');
    assert.equal(contract.backup.endpoint, 'http://minio.storage:9000');
    assert.equal(contract.backup.credentialsSecret, 'etcd-backup-credentials');
    assert.deepEqual(contract.dependents, [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'kube-apiserver', namespace: 'hcp-demo', replicas: 2 }]);
    assert.equal(contract.agent.restoreServiceAccount, 'etcd-restore');
    assert.deepEqual(await outputValue(c.memberEndpoints), contract.etcd.members.map((m) => m.clientURL));
  });

  it('declares the bucket through the dynamic provider, or uses an existing one', async () => {
    new mod.EtcdCluster('etcd', base);
    await settle();
    const b = mocks.find(T.bucket, 'etcd-bucket').inputs;
    assert.equal(b.bucket, 'etcd-backups');
    assert.equal(b.expirationDays, 45);
    assert.equal(b.expirationPrefix, 'clusters/etcd/');
    assert.equal(typeof b.__provider, 'string', 'the provider closure serialized');
    mocks.reset();
    const c = new mod.EtcdCluster('other', { ...base, backup: { ...base.backup, bucket: { existing: 'shared-backups' } } });
    assert.equal(await outputValue(c.bucketName), 'shared-backups');
    await settle();
    assert.equal(mocks.ofType(T.bucket).length, 0);
  });

  it('runs backup, verification and auto-heal as CronJobs of the agent, Forbid concurrency, deadlines and history limits set', async () => {
    new mod.EtcdCluster('etcd', { ...base, defrag: { schedule: '0 3 * * 0' }, backup: { ...base.backup, schedule: '*/10 * * * *', retention: { keepLast: 5, maxCount: 40 } } });
    await settle();
    const crons = Object.fromEntries(mocks.ofType(T.cron).map((c) => [c.name, c.inputs]));
    assert.deepEqual(Object.keys(crons).sort(), ['etcd-backup', 'etcd-defrag', 'etcd-drill', 'etcd-heal', 'etcd-verify']);
    assert.equal(crons['etcd-drill'].spec.schedule, '30 4 * * *', 'the scheduled restore drill, daily by default');
    assert.equal(crons['etcd-backup'].spec.schedule, '*/10 * * * *');
    assert.equal(crons['etcd-verify'].spec.schedule, '15 * * * *');
    assert.equal(crons['etcd-heal'].spec.schedule, '*/5 * * * *');
    for (const c of Object.values(crons) as any[]) {
      assert.equal(c.spec.concurrencyPolicy, 'Forbid');
      assert.ok(c.spec.startingDeadlineSeconds > 0);
      assert.ok(c.spec.jobTemplate.spec.activeDeadlineSeconds > 0);
      assert.equal(c.spec.successfulJobsHistoryLimit, 3);
      assert.equal(c.spec.failedJobsHistoryLimit, 3);
      const ctr = c.spec.jobTemplate.spec.template.spec.containers[0];
      assert.equal(ctr.image, 'ghcr.io/etcd-recover/agent:0.1.0');
      assert.equal(ctr.securityContext.allowPrivilegeEscalation, false);
      assert.ok(ctr.env.some((e: any) => e.name === 'ETCD_RECOVER_CONTRACT'));
    }
    const backupArgs = crons['etcd-backup'].spec.jobTemplate.spec.template.spec.containers[0].args;
    assert.deepEqual(backupArgs.slice(0, 2), ['agent', 'backup']);
    assert.ok(backupArgs.join(' ').includes('--keep-last 5'));
    assert.ok(backupArgs.join(' ').includes('--max-count 40'));
    assert.deepEqual(crons['etcd-verify'].spec.jobTemplate.spec.template.spec.containers[0].args, ['backup', 'verify', '--latest', '3', '--quiet']);
  });

  it('gives each job its own ServiceAccount and only the Role it needs', async () => {
    new mod.EtcdCluster('etcd', base);
    await settle();
    const sas = mocks.ofType(T.sa).map((s) => s.inputs);
    assert.deepEqual(sas.map((s) => s.metadata.name).sort(), ['etcd-archive', 'etcd-backup', 'etcd-drill', 'etcd-exporter', 'etcd-heal', 'etcd-restore', 'etcd-verify']);
    // Only the restore Jobs (which mount PVCs and talk to nobody) and the archiver (etcd and the bucket) run without a token; the others report their outcome.
    for (const s of sas) assert.equal(s.automountServiceAccountToken, s.metadata.name !== 'etcd-restore' && s.metadata.name !== 'etcd-archive', s.metadata.name);
    const roles = Object.fromEntries(mocks.ofType(T.role).map((r) => [r.inputs.metadata.name, r.inputs.rules]));
    assert.deepEqual(Object.keys(roles).sort(), ['etcd-backup', 'etcd-drill', 'etcd-exporter', 'etcd-heal', 'etcd-verify']);
    const reporting = [
      { apiGroups: [''], resources: ['events'], verbs: ['create'] },
      { apiGroups: [''], resources: ['configmaps'], resourceNames: ['etcd-recovery-status'], verbs: ['get', 'patch'] },
      { apiGroups: [''], resources: ['configmaps'], resourceNames: ['etcd-recovery-contract'], verbs: ['get'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
    ];
    for (const job of ['etcd-backup', 'etcd-verify', 'etcd-drill']) assert.deepEqual(roles[job], reporting, job);
    assert.deepEqual(roles['etcd-heal'], [
      ...reporting,
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] },
      { apiGroups: [''], resources: ['pods'], resourceNames: ['etcd-0', 'etcd-1', 'etcd-2'], verbs: ['delete'] },
      { apiGroups: [''], resources: ['persistentvolumeclaims'], resourceNames: ['data-etcd-0', 'data-etcd-1', 'data-etcd-2'], verbs: ['get', 'delete'] },
      { apiGroups: ['apps'], resources: ['statefulsets'], resourceNames: ['etcd'], verbs: ['get'] },
    ]);
    assert.deepEqual(roles['etcd-exporter'], [
      { apiGroups: ['batch'], resources: ['jobs'], verbs: ['list'] },
      { apiGroups: ['batch'], resources: ['cronjobs'], verbs: ['get'] },
    ]);
    const binding = mocks.find(T.binding, 'etcd-heal').inputs;
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'etcd-heal', namespace: 'hcp-demo' }]);
  });

  it('declares the continuous archiver: one replica, Recreate, no token and no Role, the age recipients only, its interval in the contract', async () => {
    new mod.EtcdCluster('etcd', { ...base, backup: { ...base.backup, encryption: { secretName: 'etcd-age' } }, archive: { interval: '500ms', rebaseEvery: '30m' } });
    await settle();
    const d = mocks.find('kubernetes:apps/v1:Deployment', 'etcd-archiver').inputs;
    assert.equal(d.metadata.name, 'etcd-archiver');
    assert.equal(d.spec.replicas, 1);
    assert.equal(d.spec.strategy.type, 'Recreate');
    const pod = d.spec.template.spec;
    assert.equal(pod.serviceAccountName, 'etcd-archive');
    assert.equal(pod.automountServiceAccountToken, false);
    const c = pod.containers[0];
    assert.deepEqual(c.args, ['agent', 'archive', '--interval', '500', '--rebase-every', '1800', '--max-buffer-mib', '64']);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    const age = pod.volumes.find((v: any) => v.name === 'age-key');
    assert.deepEqual(age.secret.items, [{ key: 'recipients', path: 'recipients' }], 'it encrypts; it never opens backups');
    assert.ok(!c.env.some((e: any) => e.name === 'ETCD_RECOVER_AGE_IDENTITY_FILE'));
    assert.equal(mocks.ofType(T.role).some((r) => r.inputs.metadata.name === 'etcd-archive'), false);
    const contract = parseContract(mocks.find(T.cm, 'etcd-recovery-contract').inputs.data['contract.json'], 'test');
    assert.deepEqual(contract.archive, { deployment: 'etcd-archiver', intervalMs: 500 });
    mocks.reset();
    new mod.EtcdCluster('etcd', { ...base, archive: { enabled: false } });
    await settle();
    assert.equal(mocks.ofType('kubernetes:apps/v1:Deployment').some((r) => r.inputs.metadata.name === 'etcd-archiver'), false);
    assert.equal(parseContract(mocks.find(T.cm, 'etcd-recovery-contract').inputs.data['contract.json'], 'test').archive, undefined);
  });

  it('parents every child to the component', async () => {
    new mod.EtcdCluster('etcd', base);
    await settle();
    const component = mocks.resources.find((r) => r.type === 'etcd-recover:index:EtcdCluster');
    assert.ok(component, 'the component registers with type token etcd-recover:index:EtcdCluster');
    assert.ok(mocks.resources.filter((r) => r.custom).length >= 14);
  });

  it('accepts a lifecycle expiry that outlasts the longest retention window by the grace period', async () => {
    new mod.EtcdCluster('etcd', { ...base, backup: { ...base.backup, bucket: { create: { name: 'etcd-backups', expirationDays: 21 } }, retention: { daily: '14d', weekly: '0d' } } });
    await settle();
    const b = mocks.find(T.bucket, 'etcd-bucket').inputs;
    assert.equal(b.expirationDays, 21);
  });

  it('etcdVersion selects the etcd image and is recorded in the contract (restores check snapshots against it)', async () => {
    for (const [v, image] of [['3.5.35', 'registry.k8s.io/etcd:3.5.35-0'], ['3.7.3', 'registry.k8s.io/etcd:3.7.3-0'], [undefined, 'registry.k8s.io/etcd:3.6.16-0']] as const) {
      mocks.reset();
      new mod.EtcdCluster('etcd', { ...base, ...(v ? { etcdVersion: v } : {}) });
      await settle();
      const sts = mocks.find('kubernetes:apps/v1:StatefulSet', 'etcd-statefulset').inputs;
      assert.equal(sts.spec.template.spec.containers.find((c: any) => c.name === 'etcd').image, image);
      assert.equal(parseContract(mocks.find(T.cm, 'etcd-recovery-contract').inputs.data['contract.json'], 'test').etcd.version, v ?? '3.6.16');
    }
    // A custom image without etcdVersion: the contract says nothing (the plugin reads the image's tag).
    mocks.reset();
    new mod.EtcdCluster('etcd', { ...base, image: 'registry.example/etcd:custom' });
    await settle();
    assert.equal(parseContract(mocks.find(T.cm, 'etcd-recovery-contract').inputs.data['contract.json'], 'test').etcd.version, undefined);
  });

  describe('rejects bad arguments before any resource exists, naming the argument', () => {
    const cases: [string, any, RegExp][] = [
      ['an archive interval that is no RPO', { archive: { interval: '5m' } }, /archive\.interval: "5m" must be 50ms to 60s/],
      ['an archive rebase too frequent', { archive: { rebaseEvery: '10s' } }, /archive\.rebaseEvery: "10s" must be a duration of at least 1 minute/],
      ['an etcd version too old for revision-safe restores', { etcdVersion: '3.5.9' }, /etcdVersion: "3\.5\.9" is not an etcd version this tool restores \(3\.5\.10 or newer/],
      ['an etcd version that is not one', { etcdVersion: 'latest' }, /etcdVersion: "latest" is not an etcd version/],
      ['even members', { members: 4 }, /members: must be odd \(got 4\)/],
      ['zero members', { members: 0 }, /members: must be an odd number ≥ 1 \(got 0\)/],
      ['a schedule that is not cron', { backup: { ...base.backup, schedule: 'every hour' } }, /backup\.schedule: "every hour" is not a cron schedule/],
      ['a cron field out of range', { backup: { ...base.backup, schedule: '61 * * * *' } }, /backup\.schedule: .*minute field "61" is outside 0-59/],
      ['a retention of zero', { backup: { ...base.backup, retention: { keepLast: 0, keepWithin: '0h', hourly: '0h', daily: '0d', weekly: '0w' } } }, /backup\.retention: keeps nothing/],
      ['maxCount zero', { backup: { ...base.backup, retention: { maxCount: 0 } } }, /backup\.retention\.maxCount: must be at least 1/],
      ['TLS half-configured', { tls: { serverSecret: 'etcd-server-tls' } }, /tls: serverSecret and clientSecret go together/],
      ['a bucket name S3 rejects', { backup: { ...base.backup, bucket: { create: { name: 'Etcd_Backups' } } } }, /backup\.bucket: "Etcd_Backups" must be 3-63 characters/],
      ['a topology flag in extraArgs', { extraArgs: ['--initial-cluster-state=existing'] }, /extraArgs: "--initial-cluster-state=existing" is set by the component/],
      [
        'a lifecycle expiry shorter than retention (7 days while weekly backups are kept 90 days)',
        { backup: { ...base.backup, bucket: { create: { name: 'etcd-backups', expirationDays: 7 } }, retention: { weekly: '90d' } } },
        /backup\.bucket\.create\.expirationDays: 7 days would delete backups that backup\.retention\.weekly \("90d"\) keeps: .*expirationDays ≥ 97\).*newest verified/,
      ],
      [
        'a lifecycle expiry equal to the default retention (once backups stop it deletes the newest verified backup)',
        { backup: { ...base.backup, bucket: { create: { name: 'etcd-backups', expirationDays: 30 } } } },
        /backup\.bucket\.create\.expirationDays: 30 days would delete backups that backup\.retention\.weekly \("30d"\) keeps: .*expirationDays ≥ 37\)/,
      ],
      [
        'a lifecycle expiry shorter than the daily window when the weekly one is off',
        { backup: { ...base.backup, bucket: { create: { name: 'etcd-backups', expirationDays: 20 } }, retention: { daily: '14d', weekly: '0d' } } },
        /backup\.bucket\.create\.expirationDays: 20 days would delete backups that backup\.retention\.daily \("14d"\) keeps: .*expirationDays ≥ 21\)/,
      ],
      [
        'a lifecycle expiry that would cut the point-in-time window (archive.keep 30d, expiry 21 days)',
        { backup: { ...base.backup, bucket: { create: { name: 'etcd-backups', expirationDays: 21 } }, retention: { daily: '14d', weekly: '0d' } }, archive: { keep: '30d' } },
        /backup\.bucket\.create\.expirationDays: 21 days would delete archive segments that archive\.keep \("30d"\) keeps: .*expirationDays ≥ 37\).*newest chain/,
      ],
    ];
    for (const [what, override, re] of cases) {
      it(what, async () => {
        assert.throws(() => new mod.EtcdCluster('etcd', { ...base, ...override }), re);
        await settle();
        assert.equal(mocks.resources.filter((r) => r.custom).length, 0, 'no resource was registered');
      });
    }
  });
});
