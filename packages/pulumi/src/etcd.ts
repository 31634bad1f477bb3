import * as pulumi from '@pulumi/pulumi';
import * as k8s from '@pulumi/kubernetes';
import type { ResolvedArgs } from './resolve-args.js';
import { buildContract, podLabels } from './contract.js';
import { sseCustomerKeyMount } from './jobs.js';
import { AGE_DIR, AGE_VOLUME, CONFIG_FILE, DATA_DIR, MOUNT, PORTS, TLS_DIR, namesFor } from './names.js';

type Input<T> = pulumi.Input<T>;
type Container = k8s.types.input.core.v1.Container;
type Volume = k8s.types.input.core.v1.Volume;
type VolumeMount = k8s.types.input.core.v1.VolumeMount;

/** TLS secrets mounted into the etcd pod (and passed to member-init, which writes etcd's config). */
/** member-init opens backups (auto-restore, the start-up decision): the whole age key Secret, when backups are encrypted. */
function ageMounts(r: ResolvedArgs): { volumes: Volume[]; mounts: VolumeMount[]; env: k8s.types.input.core.v1.EnvVar[] } {
  const enc = r.backup.encryption;
  if (!enc) return { volumes: [], mounts: [], env: [] };
  return {
    volumes: [{ name: AGE_VOLUME, secret: { secretName: enc.secretName, defaultMode: 0o440 } }],
    mounts: [{ name: AGE_VOLUME, mountPath: AGE_DIR, readOnly: true }],
    env: [
      { name: 'ETCD_RECOVER_AGE_RECIPIENTS_FILE', value: `${AGE_DIR}/recipients` },
      { name: 'ETCD_RECOVER_AGE_IDENTITY_FILE', value: `${AGE_DIR}/identity` },
    ],
  };
}

function tlsMounts(r: ResolvedArgs): { volumes: Volume[]; mounts: VolumeMount[] } {
  const volumes: Volume[] = [];
  const mounts: VolumeMount[] = [];
  for (const [kind, secret] of [['server', r.tls?.serverSecret], ['peer', r.tls?.peerSecret], ['client', r.tls?.clientSecret]] as const) {
    if (!secret) continue;
    volumes.push({ name: `tls-${kind}`, secret: { secretName: secret, defaultMode: 0o400 } });
    mounts.push({ name: `tls-${kind}`, mountPath: `${TLS_DIR}/${kind}`, readOnly: true });
  }
  return { volumes, mounts };
}

const downward: k8s.types.input.core.v1.EnvVar[] = [
  { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
  { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
];

/** Where member-init reads the recovery contract (the ConfigMap the backup CronJobs mount). */
const CONTRACT_DIR = '/etc/etcd-recover';

/**
 * The agent's member-init: decides how the member starts (docs/design.md, "Member start-up
 * decision") and writes etcd's config file. It reads the cluster's catalog in the bucket the way the
 * backup CronJobs do: the recovery contract (bucket, prefix, endpoint) and the credentials Secret.
 */
function memberInit(r: ResolvedArgs, mounts: VolumeMount[]): Container {
  const n = namesFor(r.name);
  const contract = buildContract(r, '-', undefined);
  const args = [
    'agent',
    'member-init',
    '--name=$(POD_NAME)',
    `--data-dir=${DATA_DIR}`,
    `--config-file=${CONFIG_FILE}`,
    `--initial-cluster=${contract.etcd.members.map((m) => `${m.name}=${m.peerURL}`).join(',')}`,
    `--client-urls=${contract.etcd.members.map((m) => `${m.name}=${m.clientURL}`).join(',')}`,
    `--initial-cluster-token=${r.name}`,
    `--peer-url=${r.peerScheme}://$(POD_NAME).${n.headless}.$(POD_NAMESPACE).svc:${PORTS.peer}`,
    `--client-url=${r.scheme}://$(POD_NAME).${n.headless}.$(POD_NAMESPACE).svc:${PORTS.client}`,
    `--metrics-port=${PORTS.metrics}`,
    `--peer-wait=${r.peerWaitSeconds}`,
  ];
  if (r.autoRestore) args.push('--auto-restore');
  if (r.tls?.serverSecret) args.push(`--server-tls-dir=${TLS_DIR}/server`, `--client-tls-dir=${TLS_DIR}/client`);
  if (r.tls?.peerSecret) args.push(`--peer-tls-dir=${TLS_DIR}/peer`);
  if (r.quotaBackendBytes !== undefined) args.push(`--quota-backend-bytes=${r.quotaBackendBytes}`);
  for (const x of r.extraArgs) args.push(`--etcd-arg=${x}`);
  return {
    name: 'member-init',
    image: r.agentImage,
    command: ['kubectl-etcd_recover'],
    // The last log lines (the one-line error) become the pod's status message, which `pulumi up` and `kubectl describe` show.
    terminationMessagePolicy: 'FallbackToLogsOnError',
    // member-init writes etcd's config and manages the data dir, which the etcd container (root in the
    // etcd image) owns: it runs as etcd's user, not the agent image's 65532 (found by running the real
    // image: as 65532 it could not write the config into the volume). Nothing else is written.
    securityContext: { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true },
    args,
    env: [
      ...downward,
      { name: 'AWS_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: n.credentials, key: 'AWS_ACCESS_KEY_ID' } } },
      { name: 'AWS_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: n.credentials, key: 'AWS_SECRET_ACCESS_KEY' } } },
      { name: 'ETCD_RECOVER_CONTRACT', value: `${CONTRACT_DIR}/contract.json` },
      { name: 'HOME', value: '/tmp' },
      ...ageMounts(r).env,
      ...sseCustomerKeyMount(r).env,
    ],
    volumeMounts: [{ name: 'data', mountPath: MOUNT }, { name: 'contract', mountPath: CONTRACT_DIR, readOnly: true }, ...mounts, ...ageMounts(r).mounts, ...sseCustomerKeyMount(r).mounts],
  };
}

function affinity(r: ResolvedArgs): k8s.types.input.core.v1.Affinity | undefined {
  if (r.antiAffinity === 'none') return undefined;
  const term = { labelSelector: { matchLabels: podLabels(r) }, topologyKey: 'kubernetes.io/hostname' };
  return r.antiAffinity === 'required'
    ? { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [term] } }
    : { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 100, podAffinityTerm: term }] } };
}

/**
 * The members. `contract` is the ConfigMap member-init reads: the StatefulSet waits for it (and so
 * for the bucket it names), so a bucket that cannot be created stops `up` before any member starts.
 */
export function createEtcd(name: string, r: ResolvedArgs, contract: pulumi.Resource, opts: pulumi.CustomResourceOptions) {
  const n = namesFor(name);
  const labels = podLabels(r);
  const { volumes, mounts } = tlsMounts(r);
  const ports = [
    { name: 'client', port: PORTS.client, targetPort: 'client' },
    { name: 'peer', port: PORTS.peer, targetPort: 'peer' },
  ];
  const headless = new k8s.core.v1.Service(
    `${name}-discovery`,
    {
      metadata: { name: n.headless, namespace: r.namespace, labels },
      spec: { clusterIP: 'None', publishNotReadyAddresses: true, selector: labels, ports },
    },
    opts,
  );
  const client = new k8s.core.v1.Service(
    `${name}-client`,
    {
      metadata: {
        name: n.client,
        namespace: r.namespace,
        labels,
        // `up` waits for the members through the StatefulSet (bounded by readyTimeout); the provider's
        // own wait for this Service's endpoints would hang `up` for 10 minutes on a member that cannot start.
        annotations: { 'pulumi.com/skipAwait': 'true' },
      },
      spec: { selector: labels, ports: [ports[0]!] },
    },
    opts,
  );
  const probe = (path: string, failureThreshold: number): k8s.types.input.core.v1.Probe => ({
    httpGet: { path, port: PORTS.metrics, scheme: 'HTTP' },
    periodSeconds: 5,
    timeoutSeconds: 3,
    failureThreshold,
  });
  const resources: Input<k8s.types.input.core.v1.ResourceRequirements> = r.resources ?? { requests: { cpu: '100m', memory: '256Mi' } };
  const statefulSet = new k8s.apps.v1.StatefulSet(
    `${name}-statefulset`,
    {
      metadata: { name: n.statefulSet, namespace: r.namespace, labels },
      spec: {
        serviceName: n.headless,
        replicas: r.members,
        // Members must start together: a lone first member never becomes ready without its quorum.
        podManagementPolicy: 'Parallel',
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            automountServiceAccountToken: false,
            terminationGracePeriodSeconds: 30,
            ...(affinity(r) ? { affinity: affinity(r)! } : {}),
            initContainers: [memberInit(r, mounts)],
            containers: [
              {
                name: 'etcd',
                image: r.image,
                command: ['etcd'],
                args: [`--config-file=${CONFIG_FILE}`],
                terminationMessagePolicy: 'FallbackToLogsOnError',
                ports: [
                  { name: 'client', containerPort: PORTS.client },
                  { name: 'peer', containerPort: PORTS.peer },
                  { name: 'metrics', containerPort: PORTS.metrics },
                ],
                readinessProbe: probe('/readyz', 3),
                livenessProbe: { ...probe('/livez', 8), initialDelaySeconds: 10 },
                resources,
                volumeMounts: [{ name: 'data', mountPath: MOUNT }, ...mounts],
              },
            ],
            volumes: [...volumes, ...ageMounts(r).volumes, ...sseCustomerKeyMount(r).volumes, { name: 'contract', configMap: { name: n.contract } }],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: n.volumeClaimTemplate, labels },
            spec: {
              accessModes: ['ReadWriteOnce'],
              ...(r.storageClassName ? { storageClassName: r.storageClassName } : {}),
              resources: { requests: { storage: r.storageSize } },
            },
          },
        ],
      },
    },
    { ...opts, dependsOn: [headless, contract], customTimeouts: { create: r.readyTimeout, update: r.readyTimeout } },
  );
  const pdb = new k8s.policy.v1.PodDisruptionBudget(
    `${name}-pdb`,
    {
      metadata: { name: n.pdb, namespace: r.namespace, labels },
      // Voluntary disruptions may take down at most one member, and only while a quorum remains.
      spec: { maxUnavailable: r.members > 1 ? 1 : 0, selector: { matchLabels: labels } },
    },
    opts,
  );
  return { headless, client, statefulSet, pdb };
}
