export * from './sandbox.js';
export { isAlive, stopProcess, spawnDetached } from '../processes.js';
export { SandboxTarget } from './sandbox-target.js';
export * from './drill.js';
export type { SandboxTls, MemberTls } from './sandbox-pki.js';
