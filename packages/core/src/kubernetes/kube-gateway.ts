/**
 * What etcd-recover needs from the Kubernetes API, as a small interface; only
 * client-node-gateway.ts imports @kubernetes/client-node.
 */
export interface PodInfo {
  name: string;
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
