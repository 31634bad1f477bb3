/**
 * The sha256 of a local file computed somewhere else than the verifying thread: in another process.
 *
 * verifySnapshotFile hashes a large file in parallel with parsing it. The default is a worker thread
 * (WorkerSha). Where a Worker cannot run — the single executable, whose startup snapshot holds every
 * command: a Worker started from it aborts inside Node — the CLI registers a FileHasher that hashes the
 * file in a second process of itself (`hashFile` there), and the verifier gets a DeferredSha: it keeps
 * only the byte count and the last 32 bytes, and takes the digests from that process at the end. The
 * two reads must agree (size and tail), or the file changed while it was verified: an error, never a
 * report.
 */
import { openSync, readSync, closeSync } from 'node:fs';
import { HOLD_BACK, InlineSha, type ShaResult, type ShaSink } from './sha-sink.js';

export interface FileDigests extends ShaResult {
  /** Bytes hashed. */
  size: number;
}

/** Hashes a whole file the way the verifier's sink does (content before the last 32 bytes, and all). */
export type FileHasher = (path: string) => Promise<FileDigests>;

let external: FileHasher | undefined;

/** Registers (or clears) the hasher verifySnapshotFile uses instead of a worker thread. */
export function setFileHasher(h: FileHasher | undefined): void {
  external = h;
}

export function fileHasher(): FileHasher | undefined {
  return external;
}

/** sha256 of a file in this thread, read in 1 MiB blocks: what a hasher process runs. */
export function hashFile(path: string): FileDigests {
  const fd = openSync(path, 'r');
  try {
    const sha = new InlineSha();
    const buf = Buffer.allocUnsafe(1 << 20);
    let size = 0;
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) {
      sha.push(buf.subarray(0, n));
      size += n;
    }
    return { ...sha.finish(), size };
  } finally {
    closeSync(fd);
  }
}

/** Digests as text (what a hasher process prints) and back. */
export const digestsToJson = (d: FileDigests) => JSON.stringify({ content: d.content.toString('hex'), all: d.all.toString('hex'), tail: d.tail.toString('hex'), size: d.size });
export function digestsFromJson(text: string): FileDigests {
  const j = JSON.parse(text) as Record<string, unknown>;
  const hex = (k: string, len?: number) => {
    const v = j[k];
    if (typeof v !== 'string' || !/^([0-9a-f]{2})*$/.test(v) || (len !== undefined && v.length !== len * 2)) throw new Error(`the hasher's answer has no valid "${k}"`);
    return Buffer.from(v, 'hex');
  };
  if (!Number.isSafeInteger(j['size'])) throw new Error('the hasher\'s answer has no size');
  return { content: hex('content', 32), all: hex('all', 32), tail: hex('tail'), size: j['size'] as number };
}

/** A sink that hashes nothing: it counts, keeps the tail, and returns the digests it is given. */
export class DeferredSha implements ShaSink {
  private total = 0;
  private readonly tail = Buffer.alloc(HOLD_BACK);
  private tailLen = 0;
  private result: ShaResult | undefined;

  get bytes(): number {
    return this.total;
  }

  push(b: Uint8Array): void {
    this.total += b.length;
    if (b.length >= HOLD_BACK) {
      this.tail.set(b.subarray(b.length - HOLD_BACK));
      this.tailLen = HOLD_BACK;
      return;
    }
    const keep = Math.min(this.tailLen, HOLD_BACK - b.length);
    this.tail.copyWithin(0, this.tailLen - keep, this.tailLen);
    this.tail.set(b, keep);
    this.tailLen = keep + b.length;
  }

  /** The other read's digests; throws when it did not read what this one did. */
  resolve(d: FileDigests): void {
    const tail = this.tail.subarray(0, this.tailLen);
    if (d.size !== this.total || !d.tail.equals(tail)) {
      throw new Error(`the file changed while it was being verified (read ${this.total} bytes, hashed ${d.size}): verify it again once nothing writes to it`);
    }
    this.result = { content: d.content, all: d.all, tail: Buffer.from(tail) };
  }

  finish(): ShaResult {
    if (!this.result) throw new Error('DeferredSha.finish() before resolve()');
    return this.result;
  }

  slot(): Buffer | null {
    return null;
  }

  commit(): void {
    throw new Error('DeferredSha has no ring');
  }

  abort(): void {}
}
