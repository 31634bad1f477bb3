/**
 * A real Kubernetes control plane for tests (etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler from the cached builds) plus a kubelet that runs pods as host processes.
 * See docs/k8s-harness.md.
 */
export { startControlPlane, kubeBinaries, pluginBin, KUBE_VERSION, type ControlPlane, type ControlPlaneOptions } from './control-plane.js';
export { applyManifests } from './apply.js';
export { waitFor, sleep } from './util.js';
export { ProcessKubelet, defaultImages, type ImageSpec, type KubeletOptions } from './process-kubelet.js';
