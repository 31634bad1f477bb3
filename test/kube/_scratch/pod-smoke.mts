import { startControlPlane, applyManifests, waitFor } from '../../support/kube/index.js';
import { CoreV1Api } from '@kubernetes/client-node';
const cp = await startControlPlane({ verbose: true });
try {
  const kc = cp.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  await applyManifests(kc, `
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: default}
data: {greeting: hello, file.txt: "file content"}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: default}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: busybox
    command: ["/bin/sh", "-c", "echo GREETING=$GREETING POD=$(POD) ip=$MYIP; id; hostname; cat /etc/hosts; ls /var/run/secrets/kubernetes.io/serviceaccount; cat /cfg/file.txt; echo; trap 'echo got TERM; exit 0' TERM; while true; do sleep 1; done"]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: MYIP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    volumeMounts: [{name: cfg, mountPath: /cfg}]
    readinessProbe: {exec: {command: ["cat", "/cfg/file.txt"]}, periodSeconds: 1}
  volumes: [{name: cfg, configMap: {name: cfg}}]
`);
  const p = await waitFor('p1 ready', async () => {
    const p = await core.readNamespacedPod({ name: 'p1', namespace: 'default' });
    return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
  }, 30_000);
  console.log(JSON.stringify(p.status, null, 1));
  console.log(cp.logsOf('default', 'p1'));
  const t = Date.now();
  await core.deleteNamespacedPod({ name: 'p1', namespace: 'default' });
  await waitFor('p1 gone', async () => { try { await core.readNamespacedPod({ name: 'p1', namespace: 'default' }); return false; } catch (e: any) { return e.code === 404; } }, 30_000);
  console.log('deleted in', Date.now() - t, 'log:', cp.logsOf('default', 'p1').split('\n').slice(-3));
} catch (e) { console.error('FAILED', e); console.error((await import('node:fs')).readFileSync(cp.dir + '/kubelet/kubelet.log', 'utf8')); }
finally { await cp.stop(); }
