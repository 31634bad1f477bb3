/**
 * The one error type of etcd-recover. Every failure a user can meet carries a
 * stable code, the process exit code the CLI uses for it, whether retrying may
 * help, and the next step to suggest. Library code throws these and never exits.
 */
export type ErrorCode =
  | 'USAGE'
  | 'CONFIG'
  | 'SNAPSHOT_CORRUPT'
  | 'SNAPSHOT_FOREIGN'
  | 'SNAPSHOT_NOT_FOUND'
  | 'NO_RESTORE_POINT'
  | 'BUCKET_NOT_FOUND'
  | 'ACCESS_DENIED'
  | 'STORE_UNREACHABLE'
  | 'STORE_ERROR'
  | 'ETCD_UNREACHABLE'
  | 'ETCD_TLS'
  | 'ETCD_ERROR'
  | 'QUORUM_LOST'
  | 'QUORUM_HOLDS'
  | 'LOCKED'
  | 'LOCK_LOST'
  | 'RESUME_CONFLICT'
  | 'NO_SPACE'
  | 'STORE_UNSAFE'
  | 'VERSION_MISMATCH'
  | 'BACKUPS_EXIST'
  | 'ABORTED'
  | 'PRECONDITION'
  | 'STEP_FAILED'
  | 'KUBERNETES_ERROR'
  | 'FORBIDDEN'
  | 'TIMEOUT'
  | 'ENCRYPTION_KEY'
  | 'INTERNAL';

/** Exit codes, documented in docs/exit-codes.md. Stable: scripts depend on them. */
export const EXIT_CODES: Record<ErrorCode, number> = {
  INTERNAL: 1,
  USAGE: 2,
  CONFIG: 2,
  SNAPSHOT_CORRUPT: 3,
  SNAPSHOT_FOREIGN: 3,
  SNAPSHOT_NOT_FOUND: 4,
  NO_RESTORE_POINT: 4,
  BUCKET_NOT_FOUND: 4,
  ACCESS_DENIED: 5,
  FORBIDDEN: 5,
  STORE_UNREACHABLE: 6,
  ETCD_UNREACHABLE: 6,
  /** The TLS handshake with a member failed (CA, client certificate, http/https): not retryable. */
  ETCD_TLS: 6,
  STORE_ERROR: 6,
  ETCD_ERROR: 6,
  KUBERNETES_ERROR: 6,
  TIMEOUT: 6,
  LOCKED: 7,
  LOCK_LOST: 7,
  ABORTED: 8,
  QUORUM_LOST: 9,
  QUORUM_HOLDS: 9,
  PRECONDITION: 9,
  RESUME_CONFLICT: 9,
  BACKUPS_EXIST: 9,
  STEP_FAILED: 10,
  NO_SPACE: 11,
  STORE_UNSAFE: 12,
  /** A backup is encrypted and no configured identity opens it (missing or wrong key): never "corrupt". */
  ENCRYPTION_KEY: 13,
  /** The restore point was written by an etcd the target's etcd cannot restore (a newer minor; with --require-same-version any other release). */
  VERSION_MISMATCH: 14,
};

const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'STORE_UNREACHABLE',
  'ETCD_UNREACHABLE',
  'TIMEOUT',
  'LOCKED',
]);

export interface ErrorDetails {
  /** The next step to suggest to the person reading the message. */
  hint?: string;
  cause?: unknown;
  retryable?: boolean;
}

export class EtcdRecoverError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  readonly retryable: boolean;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'EtcdRecoverError';
    this.code = code;
    this.exitCode = EXIT_CODES[code];
    this.retryable = details.retryable ?? RETRYABLE.has(code);
    this.hint = details.hint;
  }

  toJSON(): { code: ErrorCode; message: string; hint?: string; exitCode: number; retryable: boolean } {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint ? { hint: this.hint } : {}),
      exitCode: this.exitCode,
      retryable: this.retryable,
    };
  }
}

export function isEtcdRecoverError(e: unknown): e is EtcdRecoverError {
  return e instanceof EtcdRecoverError;
}

/** A message for any thrown value, without stack noise. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
