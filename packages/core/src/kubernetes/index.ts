export * from './kube-gateway.js';
export { ClientNodeGateway } from './client-node-gateway.js';
export * from './kube-cluster.js';
export * from './kube-target.js';
export * from './companions.js';
export * from './job-events.js';
export { hostedClusterFromKubeconfig, hostedClusterFromSecret } from './hosted-cluster.js';
