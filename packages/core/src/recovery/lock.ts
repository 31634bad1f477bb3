import { hostname } from 'node:os';
import { EtcdRecoverError } from '../errors.js';
import { layout } from '../layout.js';
import { isAlive } from '../processes.js';
import type { ObjectStore } from '../store/object-store.js';

export interface LockHolder {
  host: string;
  pid: number;
  recoveryId: string;
  kind: string;
  command: string;
  startedAt: string;
  heartbeatAt: string;
}

/** After this long without a heartbeat, a lock held from another host is considered abandoned. */
export const DEFAULT_STALE_AFTER_MS = 60_000;

/** Whether the holder is certainly gone: same host and its process is dead, or its heartbeat is stale. */
export function holderIsGone(h: LockHolder, now = Date.now(), staleAfterMs = DEFAULT_STALE_AFTER_MS): boolean {
  if (h.host === hostname()) return !isAlive(h.pid);
  return now - Date.parse(h.heartbeatAt) > staleAfterMs;
}

/**
 * One recovery per cluster at a time: a lock object created with
 * If-None-Match beside the backups, heartbeated while the recovery runs. A
 * second recovery refuses, naming the holder; a crashed holder's lock is taken
 * over (compare-and-swap on its etag) by the rerun that resumes its journal.
 */
export class RecoveryLock {
  private etag: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private holder: LockHolder | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly cluster: string,
    private readonly staleAfterMs = DEFAULT_STALE_AFTER_MS,
  ) {}

  private get key(): string {
    return layout.lock(this.cluster);
  }

  async read(signal?: AbortSignal): Promise<{ holder: LockHolder; etag?: string } | undefined> {
    const r = await this.store.read(this.key, signal);
    if (!r) return undefined;
    return { holder: JSON.parse(r.body.toString()) as LockHolder, ...(r.etag ? { etag: r.etag } : {}) };
  }

  /**
   * Acquires the lock for `recoveryId`. If a live holder has it, throws LOCKED.
   * If a gone holder has it, takes it over and returns the previous holder (its
   * recovery should be resumed).
   */
  async acquire(recoveryId: string, kind: string, command: string, signal?: AbortSignal): Promise<{ previous?: LockHolder }> {
    const now = new Date().toISOString();
    const holder: LockHolder = { host: hostname(), pid: process.pid, recoveryId, kind, command, startedAt: now, heartbeatAt: now };
    for (let attempt = 0; attempt < 3; attempt++) {
      if (await this.store.put(this.key, JSON.stringify(holder), { ifNoneMatch: true, ...(signal ? { signal } : {}) })) {
        await this.adopt(holder, signal);
        return {};
      }
      const cur = await this.read(signal);
      if (!cur) continue;
      if (!holderIsGone(cur.holder, Date.now(), this.staleAfterMs)) {
        throw new EtcdRecoverError('LOCKED', `another recovery of cluster ${this.cluster} is running: ${cur.holder.kind} ${cur.holder.recoveryId} by pid ${cur.holder.pid} on ${cur.holder.host}, started ${cur.holder.startedAt} (last heartbeat ${cur.holder.heartbeatAt})`, {
          hint: 'wait for it to finish; if that process is gone for good, rerun after its heartbeat is older than ' + Math.round(this.staleAfterMs / 1000) + ' s',
        });
      }
      const takeover = { ...holder, recoveryId: cur.holder.recoveryId === recoveryId ? recoveryId : holder.recoveryId };
      if (cur.etag && (await this.store.put(this.key, JSON.stringify(takeover), { ifMatch: cur.etag, ...(signal ? { signal } : {}) }))) {
        await this.adopt(takeover, signal);
        return { previous: cur.holder };
      }
    }
    throw new EtcdRecoverError('LOCKED', `could not acquire the recovery lock of cluster ${this.cluster} (it changed under us)`, { hint: 'rerun the command' });
  }

  private async adopt(holder: LockHolder, signal?: AbortSignal): Promise<void> {
    this.holder = holder;
    const cur = await this.read(signal);
    this.etag = cur?.etag;
    this.timer = setInterval(() => void this.beat().catch(() => undefined), Math.max(1_000, Math.floor(this.staleAfterMs / 4)));
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    if (!this.holder || !this.etag) return;
    const next = { ...this.holder, heartbeatAt: new Date().toISOString() };
    if (await this.store.put(this.key, JSON.stringify(next), { ifMatch: this.etag })) {
      this.holder = next;
      this.etag = (await this.read())?.etag;
    }
  }

  /** Re-points the held lock at another recovery id (when resuming a journal found on takeover). */
  async retarget(recoveryId: string, kind: string): Promise<void> {
    if (!this.holder) return;
    this.holder = { ...this.holder, recoveryId, kind };
    if (this.etag && (await this.store.put(this.key, JSON.stringify(this.holder), { ifMatch: this.etag }))) {
      this.etag = (await this.read())?.etag;
    }
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const cur = await this.read();
    if (cur && this.holder && cur.holder.pid === this.holder.pid && cur.holder.host === this.holder.host) {
      await this.store.delete(this.key);
    }
    this.holder = undefined;
  }

  /** Stops heartbeating without releasing (the recovery failed and must be resumed). */
  detach(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
