import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { S3ObjectStore, type S3Config } from '@etcd-recover/core';
import { repoRoot } from './binaries.js';
import { freePort, waitFor } from './ports.js';
import { spawnManaged, stopManaged, tail, type Managed } from './kube/util.js';
import { tempDir } from './sandbox.js';

/**
 * moto's S3 server: a second S3 implementation, independent of MinIO, that behaves as AWS does
 * where MinIO (as the sandbox runs it) does not:
 *
 * - virtual-hosted addressing: the endpoint is `http://s3.localhost:PORT` with forcePathStyle false,
 *   so every request goes to `<bucket>.s3.localhost:PORT` and moto takes the bucket from the Host
 *   header. Names under .localhost are loopback by RFC 6761; the store resolves them so itself
 *   (localhostLookup), as glibc here does not;
 * - IAM authentication, enforced: a user with an access key and an s3:* policy is made through
 *   moto's IAM API, then /moto-api/reset-auth turns checking on for every later request (moto
 *   accepts any credentials until then), so unknown keys and wrong secrets get AWS's own errors;
 * - AWS's error shapes and its checksum handling (CRC32/CRC32C, aws-chunked, multipart).
 */
export interface Moto {
  /** The virtual-hosted endpoint (`http://s3.localhost:PORT`). */
  endpoint: string;
  /** The server itself, addressed by IP (its /moto-api). */
  url: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** The S3 configuration of the bucket, with overrides. */
  config(overrides?: Partial<S3Config>): S3Config;
  store(overrides?: Partial<S3Config>): S3ObjectStore;
  stop(): Promise<void>;
}

const live = new Set<Managed>();
process.on('exit', () => {
  for (const m of live) try { process.kill(-m.pid, 'SIGKILL'); } catch { /* gone */ }
});

let binary: string | undefined;
/** scripts/ensure-moto.sh: installs the pinned moto once (a venv in the cache) and names its moto_server. */
export function motoServer(): string {
  if (!binary) {
    const out = execFileSync('bash', [join(repoRoot, 'scripts', 'ensure-moto.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
    if (!out || !existsSync(out)) throw new Error(`moto_server missing: "${out}" (scripts/ensure-moto.sh)`);
    binary = out;
  }
  return binary;
}

/** A moto IAM call (Query protocol). Before auth is enforced moto reads only the service from the signature's scope. */
async function iam(url: string, params: Record<string, string>): Promise<string> {
  const r = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'AWS4-HMAC-SHA256 Credential=setup/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: new URLSearchParams({ Version: '2010-05-08', ...params }).toString(),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`moto IAM ${params['Action']}: HTTP ${r.status}: ${text.slice(0, 300)}`);
  return text;
}

export async function startMoto(opts: { bucket?: string } = {}): Promise<Moto> {
  const bin = motoServer();
  const port = await freePort();
  const dir = tempDir('etcd-recover-moto-');
  const url = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = { ...process.env, INITIAL_NO_AUTH_ACTION_COUNT: 'inf' };
  // Settings that would turn moto's virtual-hosted addressing off must not leak in from the caller.
  delete env['S3_IGNORE_SUBDOMAIN_BUCKETNAME'];
  delete env['MOTO_S3_CUSTOM_ENDPOINTS'];
  const m = spawnManaged('moto', bin, ['-H', '127.0.0.1', '-p', String(port)], join(dir.path, 'moto.log'), env);
  live.add(m);
  const stop = async () => {
    await stopManaged(m);
    live.delete(m);
    dir.remove();
  };
  try {
    await waitFor('moto_server to answer', async () => {
      if (m.exitCode !== undefined) throw new Error(`moto_server exited with ${m.exitCode}: ${tail(m.logFile, 10)}`);
      return (await fetch(`${url}/moto-api/data.json`)).ok;
    }, 60_000, 200);

    await iam(url, { Action: 'CreateUser', UserName: 'etcd-recover' });
    const key = await iam(url, { Action: 'CreateAccessKey', UserName: 'etcd-recover' });
    const accessKeyId = /<AccessKeyId>([^<]+)<\/AccessKeyId>/.exec(key)?.[1];
    const secretAccessKey = /<SecretAccessKey>([^<]+)<\/SecretAccessKey>/.exec(key)?.[1];
    if (!accessKeyId || !secretAccessKey) throw new Error(`moto CreateAccessKey answered no key: ${key.slice(0, 300)}`);
    await iam(url, {
      Action: 'PutUserPolicy',
      UserName: 'etcd-recover',
      PolicyName: 's3',
      PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] }),
    });
    const auth = await fetch(`${url}/moto-api/reset-auth`, { method: 'POST', body: '0' });
    if (!auth.ok) throw new Error(`moto reset-auth: HTTP ${auth.status}`);

    const bucket = opts.bucket ?? 'etcd-recover-moto';
    const endpoint = `http://s3.localhost:${port}`;
    const credentials = { accessKeyId, secretAccessKey };
    const config = (overrides: Partial<S3Config> = {}): S3Config => ({ bucket, endpoint, forcePathStyle: false, region: 'us-east-1', credentials, ...overrides });
    const made = new S3ObjectStore(config());
    try {
      await made.ensureBucket();
    } finally {
      made.destroy();
    }
    return { endpoint, url, bucket, credentials, config, store: (o) => new S3ObjectStore(config(o)), stop };
  } catch (e) {
    const log = tail(m.logFile, 20);
    await stop();
    throw new Error(`${(e as Error).message}\n--- moto.log ---\n${log}`, { cause: e });
  }
}
