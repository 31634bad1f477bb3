import { strict as assert } from 'node:assert';
import * as pulumi from '@pulumi/pulumi';
import { parseContract } from '@etcd-recover/core';
import { setupMocks, type MockRecorder } from '../support/pulumi-mocks.js';

describe('examples/hosted-control-plane (the program Pulumi.yaml runs), under mocks', () => {
  let mocks: MockRecorder;
  before(async () => {
    mocks = await setupMocks();
    pulumi.runtime.setAllConfig(
      {
        'project:namespace': 'hcp-demo',
        'project:bucket': 'hcp-demo-etcd-backups',
        'project:s3Endpoint': 'http://minio.storage.svc:9000',
        'project:s3AccessKeyId': 'AKID',
        'project:s3SecretAccessKey': 'secret-key',
      },
      ['project:s3AccessKeyId', 'project:s3SecretAccessKey'],
    );
    await import('../../examples/hosted-control-plane/index.js');
    await new Promise((r) => setTimeout(r, 200));
  });

  it('declares a namespace, etcd with its recovery machinery, and a kube-apiserver that uses it', () => {
    assert.equal(mocks.find('kubernetes:core/v1:Namespace', 'hcp').inputs.metadata.name, 'hcp-demo');
    assert.ok(mocks.find('etcd-recover:index:EtcdCluster', 'etcd'));
    const api = mocks.find('kubernetes:apps/v1:Deployment', 'kube-apiserver').inputs;
    const args: string[] = api.spec.template.spec.containers[0].args;
    assert.ok(args.includes('--etcd-servers=https://etcd-client.hcp-demo.svc:2379'), args.join(' '));
    assert.ok(args.includes('--etcd-certfile=/etc/kubernetes/etcd-client/tls.crt'), 'TLS to etcd by default');
    const sts = mocks.find('kubernetes:apps/v1:StatefulSet', 'etcd-statefulset').inputs;
    const init = sts.spec.template.spec.initContainers[0].args as string[];
    assert.ok(init.includes('--server-tls-dir=/etc/etcd/tls/server') && init.includes('--peer-tls-dir=/etc/etcd/tls/peer'), init.join(' '));
    const contract = parseContract(mocks.find('kubernetes:core/v1:ConfigMap', 'etcd-recovery-contract').inputs.data['contract.json'], 'example');
    assert.deepEqual(contract.dependents.map((d) => `${d.kind}/${d.name}`), ['Deployment/kube-apiserver']);
    assert.equal(contract.backup.bucket, 'hcp-demo-etcd-backups');
    assert.equal(mocks.ofType('kubernetes:batch/v1:CronJob').length, 4, 'backup, verify, heal and the restore drill');
  });
});
