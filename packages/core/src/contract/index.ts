export * from './recovery-contract.js';
