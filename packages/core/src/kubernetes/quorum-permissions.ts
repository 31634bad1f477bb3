import type { RecoveryContract } from '../contract/recovery-contract.js';
import { componentCronJobs, type Permission } from './kube-cluster.js';

/**
 * What the operator must be allowed to do for a quorum restore on Kubernetes, checked (SelfSubjectAccessReview)
 * before any change: the etcd StatefulSet and its PVCs and pods, the recovery Jobs, the component's
 * CronJobs (suspended and put back), the dependents scaled to zero and back, the Deployments restarted
 * after the restore, and the object that pauses reconciliation.
 */
export function quorumPermissions(c: RecoveryContract): Permission[] {
  const ns = c.namespace;
  const perms: Permission[] = [
    { verb: 'get', resource: 'statefulsets', group: 'apps', namespace: ns, name: c.etcd.statefulSet },
    { verb: 'patch', resource: 'statefulsets', group: 'apps', namespace: ns, name: c.etcd.statefulSet },
    { verb: 'list', resource: 'pods', namespace: ns },
    { verb: 'get', resource: 'pods', subresource: 'proxy', namespace: ns },
    { verb: 'get', resource: 'persistentvolumeclaims', namespace: ns },
    { verb: 'create', resource: 'persistentvolumeclaims', namespace: ns },
    { verb: 'get', resource: 'cronjobs', group: 'batch', namespace: ns, name: `${c.cluster}-backup` },
    { verb: 'create', resource: 'jobs', group: 'batch', namespace: ns },
    { verb: 'get', resource: 'jobs', group: 'batch', namespace: ns },
    { verb: 'list', resource: 'jobs', group: 'batch', namespace: ns },
    { verb: 'delete', resource: 'jobs', group: 'batch', namespace: ns },
  ];
  // The component's CronJobs are suspended during the restore and put back as they were.
  for (const name of componentCronJobs(c)) {
    perms.push({ verb: 'get', resource: 'cronjobs', group: 'batch', namespace: ns, name }, { verb: 'patch', resource: 'cronjobs', group: 'batch', namespace: ns, name });
  }
  for (const d of c.dependents) {
    const resource = d.kind === 'Deployment' ? 'deployments' : 'statefulsets';
    perms.push({ verb: 'get', resource, group: 'apps', namespace: d.namespace, name: d.name }, { verb: 'patch', resource, group: 'apps', namespace: d.namespace, name: d.name });
  }
  // The control-plane Deployments restarted after the restore. (Reading the hosted cluster's kubeconfig
  // Secret is not required: without it the after-restore steps are left undone and reported.)
  for (const d of c.afterRestore?.rolloutDeployments ?? []) {
    perms.push({ verb: 'get', resource: 'deployments', group: 'apps', namespace: ns, name: d }, { verb: 'patch', resource: 'deployments', group: 'apps', namespace: ns, name: d });
  }
  if (c.pause) {
    const group = c.pause.apiVersion.includes('/') ? c.pause.apiVersion.split('/')[0]! : '';
    const pns = c.pause.namespace ?? ns;
    perms.push({ verb: 'get', resource: c.pause.resource, group, namespace: pns, name: c.pause.name }, { verb: 'patch', resource: c.pause.resource, group, namespace: pns, name: c.pause.name });
  }
  return perms;
}
