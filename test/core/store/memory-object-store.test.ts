import { MemoryObjectStore } from '@etcd-recover/core';
import { objectStoreContract } from './object-store.contract.js';

objectStoreContract('memory', async () => ({ store: new MemoryObjectStore(7), pageSize: 7 }));
