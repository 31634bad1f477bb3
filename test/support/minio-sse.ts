import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { S3ObjectStore, type S3Config } from '@etcd-recover/core';
import { binaries } from './binaries.js';
import { freePort, waitFor } from './ports.js';
import { Pki } from './kube/pki.js';
import { spawnManaged, stopManaged, tail, type Managed } from './kube/util.js';
import { tempDir } from './sandbox.js';

/**
 * A MinIO of its own for server-side encryption, which the sandbox's MinIO does not do:
 * - a KMS: MinIO's built-in static key (MINIO_KMS_SECRET_KEY=<name>:<base64 of 32 bytes>), so it
 *   stores objects with SSE-S3 and SSE-KMS (key id = that name) and refuses other key ids;
 * - TLS, with a certificate from a throwaway CA (caFile): MinIO accepts SSE-C keys only over TLS.
 */
export interface MinioSse {
  /** https://127.0.0.1:PORT */
  endpoint: string;
  /** PEM of the CA that issued the server certificate. */
  caFile: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** The name of MinIO's static KMS key: the SSE-KMS key id it knows. */
  kmsKeyId: string;
  config(overrides?: Partial<S3Config>): S3Config;
  store(overrides?: Partial<S3Config>): S3ObjectStore;
  stop(): Promise<void>;
}

const live = new Set<Managed>();
process.on('exit', () => {
  for (const m of live) try { process.kill(-m.pid, 'SIGKILL'); } catch { /* gone */ }
});

export async function startMinioSse(opts: { bucket?: string } = {}): Promise<MinioSse> {
  const { minio } = binaries();
  const dir = tempDir('etcd-recover-minio-sse-');
  const pki = await Pki.create(join(dir.path, 'pki'));
  const leaf = await pki.issue('minio', { cn: '127.0.0.1', ips: ['127.0.0.1'], dns: ['localhost'], usage: 'server' });
  const certs = join(dir.path, 'certs');
  mkdirSync(join(certs, 'CAs'), { recursive: true });
  copyFileSync(leaf.cert, join(certs, 'public.crt'));
  copyFileSync(leaf.key, join(certs, 'private.key'));
  mkdirSync(join(dir.path, 'data'));
  const port = await freePort();
  const credentials = { accessKeyId: 'sse-admin', secretAccessKey: randomBytes(12).toString('hex') };
  const kmsKeyId = 'etcd-recover-test-key';
  const m = spawnManaged(
    'minio-sse',
    minio,
    ['server', join(dir.path, 'data'), '--address', `127.0.0.1:${port}`, '--console-address', '127.0.0.1:0', '--certs-dir', certs, '--quiet'],
    join(dir.path, 'minio.log'),
    {
      ...process.env,
      MINIO_ROOT_USER: credentials.accessKeyId,
      MINIO_ROOT_PASSWORD: credentials.secretAccessKey,
      MINIO_KMS_SECRET_KEY: `${kmsKeyId}:${randomBytes(32).toString('base64')}`,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
    },
  );
  live.add(m);
  const stop = async () => {
    await stopManaged(m);
    live.delete(m);
    dir.remove();
  };
  const bucket = opts.bucket ?? 'etcd-recover-sse';
  const endpoint = `https://127.0.0.1:${port}`;
  const config = (overrides: Partial<S3Config> = {}): S3Config => ({ bucket, endpoint, caFile: pki.ca.cert, credentials, ...overrides });
  try {
    const made = new S3ObjectStore(config({ maxAttempts: 1, requestTimeoutMs: 5_000 }));
    try {
      await waitFor('the SSE MinIO to answer over TLS', async () => {
        if (m.exitCode !== undefined) throw new Error(`minio exited with ${m.exitCode}: ${tail(m.logFile, 10)}`);
        await made.ensureBucket();
        return true;
      }, 60_000, 300);
    } finally {
      made.destroy();
    }
  } catch (e) {
    const log = tail(m.logFile, 20);
    await stop();
    throw new Error(`${(e as Error).message}\n--- minio.log ---\n${log}`, { cause: e });
  }
  return { endpoint, caFile: pki.ca.cert, bucket, credentials, kmsKeyId, config, store: (o) => new S3ObjectStore(config(o)), stop };
}
