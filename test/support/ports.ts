/** Ports and polling for tests: one implementation, shared with the Kubernetes harness. */
export { freePort, waitFor } from './kube/util.js';
