import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { EtcdRecoverError, type EtcdTls } from '@etcd-recover/core';

/** The three files of a kubernetes.io/tls-style Secret with its CA, as the component mounts them. */
export const TLS_FILES = ['ca.crt', 'tls.crt', 'tls.key'] as const;

/**
 * Checks a mounted TLS folder before anything starts: every file there and non-empty. A Secret
 * missing a key mounts without it, and etcd would otherwise fail later with a message that does
 * not name the Secret.
 */
export function requireTlsDir(dir: string, what: string): void {
  const missing = TLS_FILES.filter((f) => {
    try {
      return statSync(join(dir, f)).size === 0;
    } catch {
      return true;
    }
  });
  if (missing.length) {
    throw new EtcdRecoverError('CONFIG', `${what} (mounted at ${dir}) has no ${missing.join(', ')}`, {
      hint: `add ${missing.join(', ')} to that Secret (it needs ${TLS_FILES.join(', ')}); the pod picks it up when it restarts`,
    });
  }
}

/** Client TLS material from such a folder (checked first). */
export function readTlsDir(dir: string, what: string): EtcdTls {
  requireTlsDir(dir, what);
  return { ca: readFileSync(join(dir, 'ca.crt')), cert: readFileSync(join(dir, 'tls.crt')), key: readFileSync(join(dir, 'tls.key')) };
}
