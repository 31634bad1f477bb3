import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { EtcdRecoverError } from './errors.js';
import { layout } from './layout.js';
import { isAlive } from './processes.js';
import type { ObjectStore } from './store/object-store.js';

export interface LockHolder {
  /** Unique per run: two processes never share it (host + pid can be equal across pods). */
  runId: string;
  host: string;
  /** The kernel boot the holder ran under: with host, what makes "its pid is dead" a safe test. */
  bootId?: string;
  pid: number;
  recoveryId: string;
  kind: string;
  command: string;
  startedAt: string;
  heartbeatAt: string;
}

/**
 * After this long without a renewal (by the store's clock), a lock is considered abandoned.
 * ETCD_RECOVER_LOCK_STALE_SECONDS overrides it (every process of a cluster must agree on it).
 */
export const DEFAULT_STALE_AFTER_MS = 60_000;

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * Whether a holder is certainly gone without waiting for its heartbeat to go stale: it ran on this
 * host, under this kernel boot, and its process no longer exists.
 */
export function holderDiedHere(h: LockHolder): boolean {
  const boot = bootId();
  return h.host === hostname() && Boolean(boot) && h.bootId === boot && !isAlive(h.pid);
}

export function describeHolder(h: LockHolder): string {
  return `${h.kind} ${h.recoveryId} by pid ${h.pid} on ${h.host}, started ${h.startedAt}, last heartbeat ${h.heartbeatAt} (run ${h.runId ?? 'unknown'})`;
}

/**
 * The store's own time: the Last-Modified of a small object written now. Whatever is judged stale or
 * fresh in the bucket (a lock, a vote) is judged by this clock, never by the local one.
 */
export async function storeNow(store: ObjectStore, cluster: string, signal?: AbortSignal): Promise<Date | undefined> {
  const key = layout.lockClock(cluster);
  await store.put(key, JSON.stringify({ at: new Date().toISOString() }), { ...(signal ? { signal } : {}) });
  return (await store.head(key, signal))?.lastModified;
}

/** LOCKED, naming the live holder: what every command that finds the lock held says. */
export function lockedError(cluster: string, h: LockHolder, hint = 'wait for it to finish (its journal shows progress), then rerun'): EtcdRecoverError {
  return new EtcdRecoverError('LOCKED', `another recovery of cluster ${cluster} is running: ${describeHolder(h)}`, { hint });
}

export interface LockOptions {
  staleAfterMs?: number;
  /** The lock object; default the cluster's recovery lock (the archiver fences itself with its own). */
  key?: string;
  /** Called once when the lock is found lost (taken over, or heartbeats failing too long). */
  onLost?: (why: string) => void;
}

/**
 * One recovery per cluster at a time, fenced. The lock is an object beside the backups, created with
 * If-None-Match and renewed with If-Match on its current version:
 * - every destructive step first calls `fence()`, a conditional write that only succeeds while this
 *   run still holds that exact version; otherwise the step never starts (LOCK_LOST);
 * - heartbeats that fail for longer than half the stale window mark the lock lost (another run may
 *   take it over once the window passes), so the run stops before its next destructive step;
 * - a takeover is judged by the store's clock: the age of the lock object (its Last-Modified) against
 *   the Last-Modified of an object written just now, never the taker's own clock;
 * - a store that ignores conditional writes cannot fence anything: acquire refuses it (STORE_UNSAFE).
 */
export class RecoveryLock {
  readonly runId = randomUUID();
  private etag: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private holder: LockHolder | undefined;
  private lostWhy: string | undefined;
  private lastBeatOk = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly staleAfterMs: number;

  constructor(
    private readonly store: ObjectStore,
    private readonly cluster: string,
    private readonly opts: LockOptions = {},
  ) {
    const env = Number(process.env['ETCD_RECOVER_LOCK_STALE_SECONDS']);
    this.staleAfterMs = opts.staleAfterMs ?? (env > 0 ? env * 1000 : DEFAULT_STALE_AFTER_MS);
  }

  private get key(): string {
    return this.opts.key ?? layout.lock(this.cluster);
  }

  async read(signal?: AbortSignal): Promise<{ holder: LockHolder; etag?: string } | undefined> {
    const r = await this.store.read(this.key, signal);
    if (!r) return undefined;
    return { holder: JSON.parse(r.body.toString()) as LockHolder, ...(r.etag ? { etag: r.etag } : {}) };
  }

  /**
   * Whether the current holder is gone: it died on this host, or its lock object has not been renewed
   * for the stale window, measured by the store's clock.
   */
  async holderIsGone(h: LockHolder, signal?: AbortSignal): Promise<boolean> {
    if (holderDiedHere(h)) return true;
    const info = await this.store.head(this.key, signal);
    if (!info?.lastModified) return false;
    const now = await storeNow(this.store, this.cluster, signal);
    if (!now) return false;
    return now.getTime() - info.lastModified.getTime() > this.staleAfterMs;
  }


  /** Refuses a store that accepts writes whose conditions do not hold: such a lock fences nothing. */
  async probeConditionalWrites(signal?: AbortSignal): Promise<void> {
    const key = layout.lockProbe(this.cluster, this.runId);
    const s = signal ? { signal } : {};
    try {
      const first = await this.store.put(key, 'probe', { ifNoneMatch: true, ...s });
      const second = await this.store.put(key, 'probe-again', { ifNoneMatch: true, ...s });
      const wrongVersion = await this.store.put(key, 'probe-stale', { ifMatch: '"00000000000000000000000000000000"', ...s });
      if (!first || second || wrongVersion) {
        throw new EtcdRecoverError('STORE_UNSAFE', `the object store ${this.store.description} ignores conditional writes (If-None-Match / If-Match): the recovery lock cannot keep two recoveries apart, so recoveries refuse this store`, {
          hint: 'use a store that honours conditional writes (MinIO, AWS S3, recent Ceph RGW); backups and verification still work',
        });
      }
    } finally {
      await this.store.delete(key).catch(() => undefined);
    }
  }

  /**
   * Acquires the lock for `recoveryId`. A live holder: LOCKED. A gone holder (see holderIsGone): taken
   * over with a conditional write on its version, returning the previous holder (its journal is the
   * one to resume).
   */
  async acquire(recoveryId: string, kind: string, command: string, signal?: AbortSignal): Promise<{ previous?: LockHolder }> {
    const got = await this.tryAcquire(recoveryId, kind, command, signal);
    if ('heldBy' in got) {
      throw lockedError(this.cluster, got.heldBy, `wait for it to finish; if that process is gone for good, rerun once its lock has not been renewed for ${Math.round(this.staleAfterMs / 1000)} s (judged by the bucket's clock)`);
    }
    return got;
  }

  /** As acquire, but a live holder is an answer (`heldBy`), not an error: for runs that skip when busy. */
  async tryAcquire(recoveryId: string, kind: string, command: string, signal?: AbortSignal): Promise<{ previous?: LockHolder } | { heldBy: LockHolder }> {
    await this.probeConditionalWrites(signal);
    const now = new Date().toISOString();
    const boot = bootId();
    const holder: LockHolder = { runId: this.runId, host: hostname(), ...(boot ? { bootId: boot } : {}), pid: process.pid, recoveryId, kind, command, startedAt: now, heartbeatAt: now };
    const s = signal ? { signal } : {};
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.store.put(this.key, JSON.stringify(holder), { ifNoneMatch: true, ...s })) {
        await this.adopt(holder, signal);
        return {};
      }
      const cur = await this.read(signal);
      if (!cur) continue;
      if (!(await this.holderIsGone(cur.holder, signal))) return { heldBy: cur.holder };
      if (cur.etag && (await this.store.put(this.key, JSON.stringify(holder), { ifMatch: cur.etag, ...s }))) {
        await this.adopt(holder, signal);
        return { previous: cur.holder };
      }
    }
    throw new EtcdRecoverError('LOCKED', `could not acquire the recovery lock of cluster ${this.cluster} (it changed under us)`, { hint: 'rerun the command' });
  }

  /** After a write of `holder`, learns the version it created, checking the object is really ours. */
  private async learnVersion(holder: LockHolder, signal?: AbortSignal): Promise<boolean> {
    const cur = await this.read(signal);
    if (!cur || cur.holder.runId !== this.runId || cur.holder.heartbeatAt !== holder.heartbeatAt || !cur.etag) return false;
    this.etag = cur.etag;
    return true;
  }

  private async adopt(holder: LockHolder, signal?: AbortSignal): Promise<void> {
    this.holder = holder;
    if (!(await this.learnVersion(holder, signal))) this.markLost('the lock was replaced right after it was written');
    this.lastBeatOk = Date.now();
    this.timer = setInterval(() => void this.beat(), Math.max(1_000, Math.floor(this.staleAfterMs / 4)));
    this.timer.unref();
  }

  private markLost(why: string): void {
    if (this.lostWhy) return;
    this.lostWhy = why;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.opts.onLost?.(why);
  }

  /** One renewal: a conditional write on the version we hold. Serialized with fence(). */
  private renew(signal?: AbortSignal): Promise<void> {
    const next = this.chain.then(async () => {
      if (this.lostWhy) return;
      if (!this.holder || !this.etag) return this.markLost('the lock is not held');
      const h = { ...this.holder, heartbeatAt: new Date().toISOString() };
      const ok = await this.store.put(this.key, JSON.stringify(h), { ifMatch: this.etag, ...(signal ? { signal } : {}) });
      if (!ok) return this.markLost('another run replaced the lock (its version changed)');
      this.holder = h;
      if (!(await this.learnVersion(h, signal))) return this.markLost('another run replaced the lock right after our renewal');
      this.lastBeatOk = Date.now();
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async beat(): Promise<void> {
    try {
      await this.renew();
    } catch (e) {
      // The store did not answer. Past half the stale window another run may soon take the lock over:
      // stop before that can happen.
      if (Date.now() - this.lastBeatOk > this.staleAfterMs / 2) {
        this.markLost(`the lock could not be renewed for ${Math.round((Date.now() - this.lastBeatOk) / 1000)} s (${(e as Error).message})`);
      }
    }
  }

  /** Whether this run still believes it holds the lock. */
  get held(): boolean {
    return Boolean(this.holder) && !this.lostWhy;
  }

  /**
   * Proves this run still holds the lock, by a conditional write on the version it holds. Call before
   * every destructive step: a run that lost the lock stops here (LOCK_LOST), before changing anything.
   */
  async fence(signal?: AbortSignal): Promise<void> {
    if (!this.lostWhy) {
      try {
        await this.renew(signal);
      } catch (e) {
        throw new EtcdRecoverError('LOCK_LOST', `could not prove this run still holds the recovery lock of ${this.cluster}: ${(e as Error).message}`, {
          cause: e,
          hint: 'nothing further was changed; when the bucket answers again, rerun the same command to resume',
        });
      }
    }
    if (this.lostWhy) {
      throw new EtcdRecoverError('LOCK_LOST', `this run no longer holds the recovery lock of ${this.cluster}: ${this.lostWhy}; stopped before the next destructive step`, {
        hint: '`kubectl etcd-recover status` shows who holds it now; once it has finished, rerun the same command to resume this journal',
      });
    }
  }

  /** Re-points the held lock at another recovery id (when resuming a journal found on takeover). */
  async retarget(recoveryId: string, kind: string): Promise<void> {
    if (!this.holder) return;
    this.holder = { ...this.holder, recoveryId, kind };
    await this.fence();
  }

  /** Deletes the lock if it is still ours. */
  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.chain;
    const cur = await this.read();
    if (cur && cur.holder.runId === this.runId) await this.store.delete(this.key);
    this.holder = undefined;
  }

  /** Stops heartbeating without releasing (the recovery failed and must be resumed). */
  detach(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
