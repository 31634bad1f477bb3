import { strict as assert } from 'node:assert';
import { parseContract } from '@etcd-recover/core';
import { setupMocks } from '../support/pulumi-mocks.js';

type Mod = typeof import('@etcd-recover/pulumi');

const base = {
  namespace: 'hcp-demo',
  backup: { bucket: { existing: 'etcd-backups' }, endpoint: 'http://minio.storage:9000', credentials: { accessKeyId: 'AKID', secretAccessKey: 'very-secret' } },
};

describe('EtcdCluster afterRestore: the hosted kubeconfig Secret and the control-plane rollouts, in the contract', () => {
  let mod: Mod;
  before(async () => {
    await setupMocks();
    mod = await import('@etcd-recover/pulumi');
  });

  it('records them as the plugin reads them (defaults applied); absent, the contract has none', () => {
    const r = mod.resolveArgs('etcd', { ...base, afterRestore: { hostedKubeconfigSecret: 'hosted-admin-kubeconfig', rolloutDeployments: ['kube-controller-manager', 'kube-scheduler'] } });
    const contract = parseContract(JSON.stringify(mod.buildContract(r, 'etcd-backups', 'http://minio.storage:9000')), 'test');
    assert.deepEqual(contract.afterRestore, {
      hostedKubeconfig: { secretName: 'hosted-admin-kubeconfig', key: 'kubeconfig' },
      rolloutDeployments: ['kube-controller-manager', 'kube-scheduler'],
      stuckPodSeconds: 300,
    });
    const none = parseContract(JSON.stringify(mod.buildContract(mod.resolveArgs('etcd', base), 'etcd-backups', undefined)), 'test');
    assert.equal(none.afterRestore, undefined);
  });

  it('rejects what cannot be a Secret or Deployment name, a key without a Secret, a negative bound — naming the argument', () => {
    const bad = (afterRestore: object, re: RegExp) => assert.throws(() => mod.resolveArgs('etcd', { ...base, afterRestore }), re);
    bad({ hostedKubeconfigSecret: 'Not_A_Name' }, /EtcdCluster "etcd": afterRestore\.hostedKubeconfigSecret: "Not_A_Name" is not a Secret name/);
    bad({ hostedKubeconfigKey: 'kubeconfig' }, /afterRestore\.hostedKubeconfigKey: needs afterRestore\.hostedKubeconfigSecret/);
    bad({ rolloutDeployments: ['kcm', 'kcm'] }, /afterRestore\.rolloutDeployments: a Deployment is listed twice/);
    bad({ stuckPodSeconds: -5 }, /afterRestore\.stuckPodSeconds: must be a whole number/);
  });
});
