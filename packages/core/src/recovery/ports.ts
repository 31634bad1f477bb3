import type { HostedCronJob, HostedJob, HostedPod } from './after-restore.js';

/**
 * What the recovery layer needs from Kubernetes to replace a member in place (auto-heal and
 * `member replace` in the cluster), as a small port. The kubernetes/ layer implements it
 * (client-node-gateway.ts); nothing here imports a Kubernetes client.
 */
export interface PodInfo {
  name: string;
  /** The pod's UID: a recreated pod has a new one. */
  uid?: string;
  phase: string;
  ready: boolean;
  restarts: number;
  podIP?: string;
  deleting: boolean;
  waitingReason?: string;
}

export interface PvcInfo {
  name: string;
  phase: string;
  deleting: boolean;
  volumeName?: string;
}

export interface KubeGateway {
  getPod(namespace: string, name: string): Promise<PodInfo | undefined>;
  listPods(namespace: string, labelSelector: string): Promise<PodInfo[]>;
  deletePod(namespace: string, name: string): Promise<void>;
  getPvc(namespace: string, name: string): Promise<PvcInfo | undefined>;
  deletePvc(namespace: string, name: string): Promise<void>;
  getConfigMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
}

/**
 * The hosted cluster's API server (the cluster whose objects the restored etcd holds), as the
 * after-restore steps need it. The kubernetes/ layer implements it from a kubeconfig
 * (hosted-cluster.ts); every call has its own timeout.
 */
export interface HostedCluster {
  /** Where it is reached (the kubeconfig's server), for messages. */
  describe(): string;
  listCronJobs(signal?: AbortSignal): Promise<HostedCronJob[]>;
  listJobs(signal?: AbortSignal): Promise<HostedJob[]>;
  listPods(signal?: AbortSignal): Promise<HostedPod[]>;
  /** A JSON merge patch of the CronJob's status subresource. */
  patchCronJobStatus(namespace: string, name: string, patch: Record<string, unknown>, signal?: AbortSignal): Promise<void>;
  deletePod(namespace: string, name: string, signal?: AbortSignal): Promise<void>;
}
