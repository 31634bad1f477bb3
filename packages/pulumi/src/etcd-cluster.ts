import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import { CLUSTER_LABEL, CONTRACT_KEY, CONTRACT_LABEL } from '@etcd-recover/core';
import type { EtcdClusterArgs } from './args.js';
import { resolveArgs, type ResolvedArgs } from './resolve-args.js';
import { S3Bucket } from './bucket/index.js';
import { buildContract, podLabels } from './contract.js';
import { createJobs } from './jobs.js';
import { createEtcd } from './etcd.js';
import { createMonitoring } from './monitoring.js';
import { createArchiver } from './archive.js';
import { namesFor, PORTS } from './names.js';

/**
 * An etcd cluster on Kubernetes declared together with everything that keeps
 * it recoverable: the backup bucket, backup / verification / auto-heal (and
 * optional defrag) CronJobs running the etcd-recover agent, a ServiceAccount
 * and least-privilege Role per job, and the recovery contract — a ConfigMap
 * that `kubectl etcd-recover … --cluster NAME` reads to find all of it.
 *
 * Arguments that shape the resource graph (members, schedules, retention, TLS
 * secret names) are plain values, validated before any resource exists.
 */
export class EtcdCluster extends pulumi.ComponentResource {
  /** Client URL of the cluster (the client Service). */
  readonly clientEndpoint: pulumi.Output<string>;
  /** Client URL of each member (stable DNS names through the headless Service). */
  readonly memberEndpoints: pulumi.Output<string[]>;
  readonly bucketName: pulumi.Output<string>;
  /** Name of the recovery-contract ConfigMap (in `namespace`). */
  readonly contractName: pulumi.Output<string>;
  readonly statefulSetName: pulumi.Output<string>;
  readonly namespace: pulumi.Output<string>;

  constructor(name: string, args: EtcdClusterArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super('etcd-recover:index:EtcdCluster', name, {}, opts);
    const r = resolveArgs(name, args);
    const parent = { parent: this };
    const n = namesFor(name);

    const credentials = new k8s.core.v1.Secret(
      `${name}-backup-credentials`,
      {
        metadata: { name: n.credentials, namespace: r.namespace, labels: podLabels(r) },
        type: 'Opaque',
        stringData: {
          AWS_ACCESS_KEY_ID: pulumi.secret(r.backup.credentials.accessKeyId),
          AWS_SECRET_ACCESS_KEY: pulumi.secret(r.backup.credentials.secretAccessKey),
        },
      },
      parent,
    );

    const bucketName = createBucket(name, r, parent);
    const endpoint = r.backup.endpoint === undefined ? pulumi.output<string | undefined>(undefined) : pulumi.output(r.backup.endpoint);
    const contract = new k8s.core.v1.ConfigMap(
      `${name}-recovery-contract`,
      {
        metadata: {
          name: n.contract,
          namespace: r.namespace,
          labels: { ...podLabels(r), [CONTRACT_LABEL]: 'v1', [CLUSTER_LABEL]: name },
        },
        data: { [CONTRACT_KEY]: pulumi.all([bucketName, endpoint]).apply(([b, e]) => JSON.stringify(buildContract(r, b, e), null, 2)) },
      },
      parent,
    );

    const etcd = createEtcd(name, r, contract, parent);
    const jobs = createJobs(name, r, { contract, credentials }, parent);
    createMonitoring(name, r, { serviceAccount: jobs.serviceAccounts['exporter'], pod: jobs.agentPod, labels: jobs.labels }, parent);
    createArchiver(name, r, { serviceAccount: jobs.serviceAccounts['archive'], pod: jobs.archivePod, labels: jobs.labels }, parent);

    this.clientEndpoint = pulumi.output(`${r.scheme}://${n.client}.${r.namespace}.svc:${PORTS.client}`);
    this.memberEndpoints = pulumi.output(buildContract(r, '-', undefined).etcd.members.map((m) => m.clientURL));
    this.bucketName = bucketName;
    this.contractName = contract.metadata.name;
    this.statefulSetName = etcd.statefulSet.metadata.name;
    this.namespace = pulumi.output(r.namespace);
    this.registerOutputs({
      clientEndpoint: this.clientEndpoint,
      memberEndpoints: this.memberEndpoints,
      bucketName: this.bucketName,
      contractName: this.contractName,
      statefulSetName: this.statefulSetName,
      namespace: this.namespace,
    });
  }
}

function createBucket(name: string, r: ResolvedArgs, opts: pulumi.CustomResourceOptions): pulumi.Output<string> {
  const b = r.backup.bucket;
  if ('existing' in b) return pulumi.output(b.existing);
  const c = b.create;
  const bucket = new S3Bucket(
    `${name}-bucket`,
    {
      bucket: c.name,
      ...(r.backup.endpoint !== undefined ? { endpoint: r.backup.endpoint } : {}),
      region: r.backup.region,
      forcePathStyle: r.backup.forcePathStyle ?? r.backup.endpoint !== undefined,
      accessKeyId: r.backup.credentials.accessKeyId,
      secretAccessKey: pulumi.secret(r.backup.credentials.secretAccessKey),
      checksumMode: r.backup.checksumMode,
      versioning: c.versioning ?? true,
      ...(c.expirationDays !== undefined ? { expirationDays: c.expirationDays, expirationPrefix: `${r.backup.prefix ? r.backup.prefix.replace(/\/?$/, '/') : ''}clusters/${name}/` } : {}),
      ...(c.objectLock ? { objectLock: c.objectLock } : {}),
      forceDestroy: c.forceDestroy ?? false,
    },
    // `pulumi destroy` never deletes backups: the bucket leaves the stack and stays, with every
    // backup in it, unless forceDestroy says to empty and delete it.
    { ...opts, retainOnDelete: !(c.forceDestroy ?? false) },
  );
  return bucket.bucket;
}
