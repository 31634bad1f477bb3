export * from './etcd-gateway.js';
export { Etcd3Gateway } from './etcd3-gateway.js';
