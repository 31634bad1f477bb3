/**
 * What etcd-recover needs from the Kubernetes API. The port itself belongs to the recovery layer
 * (recovery/ports.ts, used by auto-heal); this layer implements it (client-node-gateway.ts is the
 * only file that imports @kubernetes/client-node for it).
 */
export type { KubeGateway, PodInfo, PvcInfo } from '../recovery/ports.js';
