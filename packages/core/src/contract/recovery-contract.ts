import { EtcdRecoverError } from '../errors.js';

/**
 * The recovery contract: what the Pulumi component records on the cluster (a
 * ConfigMap labelled `etcd-recover.io/contract`, key `contract.json`) so that
 * `kubectl etcd-recover … --cluster NAME` needs no other flags. Versioned by
 * `apiVersion`; documented in docs/recovery-contract.md.
 */
export const CONTRACT_API_VERSION = 'etcd-recover.io/v1';
export const CONTRACT_KIND = 'RecoveryContract';
export const CONTRACT_LABEL = 'etcd-recover.io/contract';
export const CLUSTER_LABEL = 'etcd-recover.io/cluster';
export const CONTRACT_KEY = 'contract.json';

export interface ContractMember {
  name: string;
  /** The member's PVC (volumeClaimTemplate name + "-" + pod name). */
  pvc: string;
  peerURL: string;
  clientURL: string;
}

export interface ContractWorkload {
  apiVersion: 'apps/v1';
  kind: 'Deployment' | 'StatefulSet';
  name: string;
  namespace: string;
  /** Replicas to restore after a recovery if the live object says 0. */
  replicas: number;
}

export interface ContractPause {
  apiVersion: string;
  kind: string;
  /** Plural resource name for the API path, e.g. "hostedclusters". */
  resource: string;
  name: string;
  namespace?: string;
  /** JSON merge patches that pause and resume reconciliation. */
  pausePatch: Record<string, unknown>;
  resumePatch: Record<string, unknown>;
}

export interface ContractAfterRestore {
  /** A Secret in the namespace holding a kubeconfig for the hosted cluster's API server; `key` default "kubeconfig". */
  hostedKubeconfig?: { secretName: string; key: string };
  /** Control-plane Deployments in the namespace that get a forced rollout after a restore (their caches predate it). */
  rolloutDeployments: string[];
  /** A pod in ContainerCreating or Init longer than this many seconds is stuck. Default 300. */
  stuckPodSeconds: number;
}

/** Default of afterRestore.stuckPodSeconds. */
export const STUCK_POD_SECONDS = 300;

export interface ContractSse {
  mode: 'SSE-S3' | 'SSE-KMS' | 'SSE-C';
  /** SSE-KMS only: the key id, ARN or alias; default the bucket's default KMS key. */
  kmsKeyId?: string;
  /** SSE-C only (required): the Secret (key `sse-c-key`) holding the key. */
  customerKeySecret?: string;
}

/** The key of the SSE-C Secret (backup.sse.customerKeySecret) that holds the base64 key. */
export const SSE_C_SECRET_KEY = 'sse-c-key';

export interface RecoveryContract {
  apiVersion: typeof CONTRACT_API_VERSION;
  kind: typeof CONTRACT_KIND;
  /** Logical cluster name: the folder of its backups in the bucket. */
  cluster: string;
  namespace: string;
  etcd: {
    statefulSet: string;
    /** Headless service giving members their DNS names. */
    headlessService: string;
    clientService: string;
    replicas: number;
    image: string;
    /**
     * The etcd version the image runs, e.g. "3.6.16" (the Pulumi component writes its `etcdVersion`;
     * optional for a custom image). Without it the plugin reads the version from the StatefulSet's image tag.
     */
    version?: string;
    containerName: string;
    /** The volumeClaimTemplate name; PVCs are `<template>-<pod>`. */
    volumeClaimTemplate: string;
    /** Where the PVC is mounted in the etcd container, and the data dir inside it. */
    mountPath: string;
    dataDir: string;
    clientPort: number;
    peerPort: number;
    members: ContractMember[];
    podLabels: Record<string, string>;
    tls?: {
      /** Secret with ca.crt, tls.crt, tls.key for client connections to etcd. */
      clientSecret?: string;
      serverSecret?: string;
      peerSecret?: string;
    };
  };
  backup: {
    bucket: string;
    prefix: string;
    endpoint?: string;
    region?: string;
    forcePathStyle?: boolean;
    checksumMode?: 'when_supported' | 'when_required';
    /** Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for jobs and for the plugin. */
    credentialsSecret?: string;
    /**
     * Client-side encryption (age): the Secret with key `recipients` (public keys; what the backup
     * jobs mount) and key `identity` (what verify, drill and restores mount). Absent: plain backups.
     */
    encryption?: { secretName: string };
    /**
     * Server-side encryption of every object the tool writes (docs/runbooks/backups.md). SSE-C: the
     * key is never in the contract; `customerKeySecret` names a Secret with key `sse-c-key` (the base64
     * of 32 bytes) that the jobs mount and the plugin reads. Absent: the bucket's default.
     */
    sse?: ContractSse;
  };
  agent: {
    image: string;
    /** ServiceAccount for restore Jobs (no API permissions needed). */
    restoreServiceAccount: string;
  };
  /** Workloads to scale to zero during a full restore (e.g. the hosted kube-apiserver). */
  dependents: ContractWorkload[];
  pause?: ContractPause;
  /**
   * Secrets and ConfigMaps in the namespace a restore needs beside etcd's data (the hosted API
   * server's encryption configuration, its service-account key, TLS): each backup saves them,
   * encrypted, and `quorum --restore-companions` recreates the missing ones.
   */
  companions?: { secrets: string[]; configMaps: string[] };
  /**
   * What `quorum` does in the hosted cluster once the dependents are back (docs/runbooks/quorum-loss.md,
   * "After the restore"): repair CronJobs the restore left stuck, report (with --yes delete) pods stuck
   * in ContainerCreating or Init, restart the control-plane Deployments named here. Without
   * `hostedKubeconfig` the report says what to check by hand.
   */
  afterRestore?: ContractAfterRestore;
  /** Where jobs report (Events on the contract's ConfigMap; each job's last outcome in the status ConfigMap). */
  reporting?: { contractConfigMap: string; statusConfigMap: string };
  /** Continuous archiving (docs/archive.md): the archiver's Deployment and its flush interval (the RPO it promises). Absent: off. */
  archive?: { deployment: string; intervalMs: number };
}

/** Parses and validates a contract document; errors name the field. */
export function parseContract(text: string, where: string): RecoveryContract {
  let c: RecoveryContract;
  try {
    c = JSON.parse(text) as RecoveryContract;
  } catch {
    throw new EtcdRecoverError('CONFIG', `recovery contract ${where} is not valid JSON`);
  }
  const bad = (field: string) => new EtcdRecoverError('CONFIG', `recovery contract ${where}: ${field}`, { hint: 'redeploy it with the Pulumi component, or fix the ConfigMap' });
  if (c.apiVersion !== CONTRACT_API_VERSION) throw bad(`apiVersion ${JSON.stringify(c.apiVersion)} is not ${CONTRACT_API_VERSION} (a newer tool may be needed)`);
  if (c.kind !== CONTRACT_KIND) throw bad(`kind is not ${CONTRACT_KIND}`);
  if (!c.cluster) throw bad('cluster is missing');
  if (!c.etcd?.statefulSet || !Array.isArray(c.etcd.members) || !c.etcd.members.length) throw bad('etcd.statefulSet and etcd.members are required');
  if (!c.backup?.bucket) throw bad('backup.bucket is missing');
  if (c.backup.sse !== undefined) sseProblem(c.backup.sse, bad);
  if (!c.agent?.image) throw bad('agent.image is missing');
  c.dependents ??= [];
  if (c.companions !== undefined) {
    const names = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'string' && x.length > 0);
    if (!names(c.companions.secrets ?? []) || !names(c.companions.configMaps ?? [])) throw bad('companions.secrets and companions.configMaps must be lists of names');
    c.companions = { secrets: c.companions.secrets ?? [], configMaps: c.companions.configMaps ?? [] };
  }
  if (c.afterRestore !== undefined) c.afterRestore = afterRestoreOf(c.afterRestore, bad);
  return c;
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function afterRestoreOf(a: Partial<ContractAfterRestore>, bad: (field: string) => EtcdRecoverError): ContractAfterRestore {
  if (typeof a !== 'object' || a === null) throw bad('afterRestore is not an object');
  const k = a.hostedKubeconfig;
  if (k !== undefined && (typeof k !== 'object' || k === null || !NAME.test(k.secretName ?? '') || (k.key !== undefined && !k.key))) {
    throw bad('afterRestore.hostedKubeconfig.secretName must name a Secret (key: its key, default "kubeconfig")');
  }
  const rollouts = a.rolloutDeployments ?? [];
  if (!Array.isArray(rollouts) || !rollouts.every((n) => typeof n === 'string' && NAME.test(n))) throw bad('afterRestore.rolloutDeployments must be a list of Deployment names');
  const stuck = a.stuckPodSeconds ?? STUCK_POD_SECONDS;
  if (!Number.isInteger(stuck) || stuck < 0) throw bad('afterRestore.stuckPodSeconds must be a whole number of seconds ≥ 0');
  return {
    ...(k ? { hostedKubeconfig: { secretName: k.secretName, key: k.key ?? 'kubeconfig' } } : {}),
    rolloutDeployments: rollouts,
    stuckPodSeconds: stuck,
  };
}

function sseProblem(sse: ContractSse, bad: (field: string) => EtcdRecoverError): void {
  if (typeof sse !== 'object' || sse === null) throw bad('backup.sse is not an object');
  const { mode, kmsKeyId, customerKeySecret } = sse;
  if (mode !== 'SSE-S3' && mode !== 'SSE-KMS' && mode !== 'SSE-C') throw bad(`backup.sse.mode ${JSON.stringify(mode)} is not one of SSE-S3, SSE-KMS, SSE-C`);
  // Never quotes what it finds there: it may be a key.
  if ('key' in sse) throw bad('backup.sse has an inline key; an SSE-C key belongs in the Secret backup.sse.customerKeySecret names');
  if (kmsKeyId !== undefined && (mode !== 'SSE-KMS' || typeof kmsKeyId !== 'string' || !kmsKeyId.trim())) {
    throw bad(mode !== 'SSE-KMS' ? `backup.sse.kmsKeyId is set, but the mode is ${mode}` : 'backup.sse.kmsKeyId is empty');
  }
  if (mode === 'SSE-C' && (typeof customerKeySecret !== 'string' || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(customerKeySecret))) {
    throw bad('backup.sse.customerKeySecret must name the Secret holding the SSE-C key');
  }
  if (mode !== 'SSE-C' && customerKeySecret !== undefined) throw bad(`backup.sse.customerKeySecret is set, but the mode is ${mode}`);
}

/** Member DNS names for a StatefulSet behind a headless service. */
export function memberURLs(pod: string, headless: string, namespace: string, port: number, scheme: 'http' | 'https'): string {
  return `${scheme}://${pod}.${headless}.${namespace}.svc:${port}`;
}
