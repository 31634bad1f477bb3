import { readFileSync } from 'node:fs';
import { EtcdRecoverError } from '../errors.js';

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
  if (c.endpoint) {
    try {
      const u = new URL(c.endpoint);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    } catch {
      throw new EtcdRecoverError('CONFIG', `S3 endpoint "${c.endpoint}" is not an http(s) URL`);
    }
  }
  if (c.partSize !== undefined && c.partSize < 5 * 1024 * 1024) throw new EtcdRecoverError('CONFIG', 'S3 part size must be at least 5 MiB');
  if (c.credentials && (!c.credentials.accessKeyId || !c.credentials.secretAccessKey)) {
    throw new EtcdRecoverError('CONFIG', 'S3 credentials need both an access key id and a secret key');
  }
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
