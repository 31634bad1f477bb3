export * from './errors.js';
export * from './layout.js';
export * from './concurrency.js';
export { toolVersion } from './version.js';
export * from './store/index.js';
export * from './etcd/index.js';
export * from './snapshot/index.js';
export * from './sandbox/index.js';
export * from './recovery/index.js';
