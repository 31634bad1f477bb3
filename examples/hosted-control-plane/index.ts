/**
 * `pulumi up` in this folder runs the hosted-control-plane program (program.ts); its README lists
 * the config keys. At 3 a.m., `kubectl etcd-recover quorum -n <namespace>` finds everything it
 * needs in the recovery contract: it scales the kube-apiserver down, restores etcd, and scales it back.
 */
import { hostedControlPlane } from './program.js';

const out = hostedControlPlane();

export const etcdClientEndpoint = out.etcdClientEndpoint;
export const backupBucket = out.backupBucket;
export const recoveryContract = out.recoveryContract;
export const namespace = out.namespace;
