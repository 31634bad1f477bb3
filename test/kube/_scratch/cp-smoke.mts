import { startControlPlane } from '../../support/kube/index.js';
const t0 = Date.now();
const cp = await startControlPlane({ verbose: true });
console.log('ready', cp.readyMs, cp.server, cp.dir);
const { execFileSync } = await import('node:child_process');
console.log(execFileSync('kubectl', ['--kubeconfig', cp.kubeconfigPath, 'get', 'nodes,sc,pods -A', '-o', 'wide'].join(' ').split(' '), { encoding: 'utf8' }));
await cp.stop();
console.log('stopped', Date.now() - t0);
