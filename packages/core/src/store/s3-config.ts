import { readFileSync } from 'node:fs';
import { EtcdRecoverError } from '../errors.js';

/**
 * Server-side encryption, applied to every object this tool writes:
 * - SSE-S3: keys managed by the store (`x-amz-server-side-encryption: AES256`);
 * - SSE-KMS: a KMS key (`aws:kms`), the bucket's default KMS key unless kmsKeyId names one;
 * - SSE-C: a key the caller holds (base64 of 32 bytes), sent with every write AND every read
 *   (S3 keeps only its MD5): lose it and the backups are unreadable. S3 accepts it only over
 *   HTTPS. The key never appears in an error message, a log line or the store's description.
 */
export type S3Sse = { mode: 'SSE-S3' } | { mode: 'SSE-KMS'; kmsKeyId?: string } | { mode: 'SSE-C'; key: string };

/**
 * Where the backups live, for any S3-compatible store. Every field has an
 * explicit default; validateS3Config() is the one place that checks them.
 */
export interface S3Config {
  bucket: string;
  /** Key prefix under which this tool writes; default "" (bucket root). */
  prefix?: string;
  /** Custom endpoint for S3-compatible stores (MinIO, Ceph RGW, …); default: AWS. */
  endpoint?: string;
  /** Default "us-east-1". */
  region?: string;
  /** Path-style addressing (bucket in the path); default true when an endpoint is set. */
  forcePathStyle?: boolean;
  /** PEM bundle of extra CAs to trust for the endpoint. */
  caFile?: string;
  /** Explicit credentials; otherwise credentialsFile; otherwise the standard AWS chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** An AWS shared-credentials INI file, or KEY=VALUE lines (AWS_ACCESS_KEY_ID=…), or JSON {accessKeyId, secretAccessKey}. */
  credentialsFile?: string;
  /** Profile in an INI credentials file; default "default". */
  profile?: string;
  /**
   * The SDK's checksum mode: "when_supported" (SDK default: CRC32 on every request)
   * or "when_required" (only where the API demands it; for stores that reject or
   * mangle the newer checksums). Default "when_supported".
   */
  checksumMode?: 'when_supported' | 'when_required';
  /** Attempts per request for transient errors (with backoff); default 5. */
  maxAttempts?: number;
  /** Per request socket timeout; default 60 s. Connection timeout 5 s. */
  requestTimeoutMs?: number;
  /** Multipart part size in bytes; default 5 MiB, the minimum (memory ≈ partSize × (queueSize + 1); 10,000 parts = 50 GB). */
  partSize?: number;
  /** Parts uploaded concurrently; default 1: memory stays ≈ partSize × (queueSize + 1) and the next part fills while one uploads (2 measured no faster on a 2-core machine). */
  queueSize?: number;
  /** Page size of list calls; default 1000 (S3's maximum). */
  listPageSize?: number;
  /** Server-side encryption of every object written (see S3Sse); default: the bucket's own default. */
  sse?: S3Sse;
}

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Validates a bucket name by S3's rules; returns the problem or undefined. */
export function bucketNameProblem(name: string): string | undefined {
  if (!BUCKET_RE.test(name)) return 'must be 3-63 characters of lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit';
  if (name.includes('..')) return 'must not contain two adjacent dots';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(name)) return 'must not look like an IP address';
  if (name.startsWith('xn--') || name.endsWith('-s3alias')) return 'uses a reserved prefix or suffix';
  return undefined;
}

export function validateS3Config(c: S3Config): void {
  if (!c.bucket) throw new EtcdRecoverError('CONFIG', 'no backup bucket configured', { hint: 'pass --bucket NAME (or set ETCD_RECOVER_BUCKET)' });
  const p = bucketNameProblem(c.bucket);
  if (p) throw new EtcdRecoverError('CONFIG', `bucket name "${c.bucket}" ${p}`);
  let protocol = 'https:';
  if (c.endpoint) {
    try {
      const u = new URL(c.endpoint);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
      protocol = u.protocol;
    } catch {
      throw new EtcdRecoverError('CONFIG', `S3 endpoint "${c.endpoint}" is not an http(s) URL`);
    }
  }
  if (c.sse !== undefined) validateSse(c.sse, protocol);
  if (c.partSize !== undefined && c.partSize < 5 * 1024 * 1024) throw new EtcdRecoverError('CONFIG', 'S3 part size must be at least 5 MiB');
  if (c.credentials && (!c.credentials.accessKeyId || !c.credentials.secretAccessKey)) {
    throw new EtcdRecoverError('CONFIG', 'S3 credentials need both an access key id and a secret key');
  }
}

function validateSse(sse: S3Sse, protocol: string): void {
  const mode = (sse as { mode?: unknown } | null)?.mode;
  if (mode === 'SSE-S3') return;
  if (mode === 'SSE-KMS') {
    const id = (sse as { kmsKeyId?: unknown }).kmsKeyId;
    if (id !== undefined && (typeof id !== 'string' || !id.trim())) {
      throw new EtcdRecoverError('CONFIG', 'the SSE-KMS key id is empty', { hint: 'name a KMS key id, key ARN or alias, or leave it out for the bucket\'s default KMS key' });
    }
    return;
  }
  if (mode === 'SSE-C') {
    // Checked before the transport so that a malformed key is named as such; the message never quotes it.
    sseCustomerKey(sse);
    if (protocol !== 'https:') {
      throw new EtcdRecoverError('CONFIG', 'S3 refuses SSE-C keys over plain HTTP; use an https endpoint', { hint: 'pass an https:// --s3-endpoint (with --s3-ca-file for a private CA)' });
    }
    return;
  }
  throw new EtcdRecoverError('CONFIG', `S3 server-side encryption mode ${JSON.stringify(String(mode))} is not one of SSE-S3, SSE-KMS, SSE-C`);
}

/** The 32 key bytes of an SSE-C configuration; the error never includes the key. */
export function sseCustomerKey(sse: S3Sse): Buffer {
  const key = (sse as { key?: unknown }).key;
  // Strict base64 of 32 bytes: 43 characters and one "=" of padding.
  const bytes = typeof key === 'string' && /^[A-Za-z0-9+/]{43}=$/.test(key) ? Buffer.from(key, 'base64') : undefined;
  if (!bytes || bytes.length !== 32) {
    throw new EtcdRecoverError('CONFIG', `the SSE-C key must be the base64 of exactly 32 bytes (a 256-bit AES key); ${typeof key === 'string' ? `got ${key.length} characters that are not` : 'none was given'}`, {
      hint: 'make one with: head -c 32 /dev/urandom | base64, and keep it safe: without it the backups cannot be read',
    });
  }
  return bytes;
}

export function normalizePrefix(prefix: string | undefined): string {
  if (!prefix) return '';
  const p = prefix.replace(/^\/+|\/+$/g, '');
  return p ? p + '/' : '';
}

/**
 * Reads credentials from a file: AWS INI ([profile] aws_access_key_id=…),
 * KEY=VALUE lines, or JSON. Never includes the secret in an error.
 */
export function readCredentialsFile(path: string, profile = 'default'): { accessKeyId: string; secretAccessKey: string; sessionToken?: string } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new EtcdRecoverError('CONFIG', `cannot read S3 credentials file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, { cause: e });
  }
  let fields: Record<string, string> = {};
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    try {
      fields = JSON.parse(trimmed) as Record<string, string>;
    } catch {
      throw new EtcdRecoverError('CONFIG', `S3 credentials file ${path} is not valid JSON`);
    }
  } else {
    let section: string | undefined;
    const sections: Record<string, Record<string, string>> = { '': {} };
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.trim();
      if (!line || line.startsWith('#') || line.startsWith(';')) continue;
      const m = /^\[(?:profile\s+)?([^\]]+)\]$/.exec(line);
      if (m) {
        section = m[1]!.trim();
        sections[section] ??= {};
        continue;
      }
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const k = line.slice(0, eq).trim().replace(/^export\s+/, '');
      const v = line.slice(eq + 1).trim().replace(/^["']|["']$/g, '');
      sections[section ?? '']![k.toLowerCase()] = v;
    }
    fields = sections[profile] ?? (Object.keys(sections).length === 1 ? sections[''] ?? {} : {});
    if (!sections[profile] && Object.keys(sections).length > 1) {
      throw new EtcdRecoverError('CONFIG', `S3 credentials file ${path} has no profile "${profile}"`);
    }
  }
  const pick = (...names: string[]) => {
    for (const n of names) {
      for (const [k, v] of Object.entries(fields)) if (k.toLowerCase() === n.toLowerCase() && v) return String(v);
    }
    return undefined;
  };
  const accessKeyId = pick('aws_access_key_id', 'accessKeyId', 'access_key_id', 'accesskey');
  const secretAccessKey = pick('aws_secret_access_key', 'secretAccessKey', 'secret_access_key', 'secretkey');
  const sessionToken = pick('aws_session_token', 'sessionToken');
  if (!accessKeyId || !secretAccessKey) {
    throw new EtcdRecoverError('CONFIG', `S3 credentials file ${path} lacks an access key id or secret key`);
  }
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}
