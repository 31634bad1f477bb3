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
