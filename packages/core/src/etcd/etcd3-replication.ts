import type { Etcd3 } from 'etcd3';
import { EtcdRecoverError, messageOf } from '../errors.js';
import type { EtcdConnection } from './etcd-gateway.js';
import { openEtcd3 } from './etcd3-gateway.js';
import { CompactedError, type ChangeSource, type KvEvent, type ReplayTarget, type RevisionBatch, type WatchSession } from './replication.js';

const ALL = Buffer.from([0]);

/** Groups a watch response's events by revision (a response never splits a revision). */
export function groupByRevision(events: readonly { type: string; kv: { key: Buffer; value?: Buffer; lease?: string; create_revision: string; mod_revision: string; version: string } }[], at: number): RevisionBatch[] {
  const out: RevisionBatch[] = [];
  for (const e of events) {
    const revision = Number(e.kv.mod_revision);
    let b = out[out.length - 1];
    if (!b || b.revision !== revision) out.push((b = { revision, at, events: [] }));
    const ev: KvEvent =
      e.type === 'Delete'
        ? { type: 'delete', key: Buffer.from(e.kv.key) }
        : {
            type: 'put',
            key: Buffer.from(e.kv.key),
            value: Buffer.from(e.kv.value ?? Buffer.alloc(0)),
            createRevision: Number(e.kv.create_revision),
            version: Number(e.kv.version),
            ...(e.kv.lease && e.kv.lease !== '0' ? { lease: String(e.kv.lease) } : {}),
          };
    b.events.push(ev);
  }
  return out;
}

/** The archiver's view of a live cluster: a watch of every key, and lease TTLs. */
export class Etcd3ChangeSource implements ChangeSource {
  private client: Promise<Etcd3>;

  constructor(conn: EtcdConnection) {
    this.client = openEtcd3(conn.endpoints, conn);
  }

  watchFrom(fromRevision: number): WatchSession {
    const queue: RevisionBatch[][] = [];
    let failure: Error | undefined;
    let closed = false;
    let wake: (() => void) | undefined;
    const notify = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let watcher: { cancel(): Promise<void> } | undefined;
    const started = this.client.then(async (c) => {
      const w = await c.watch().inRange({ start: ALL, end: ALL }).startRevision(String(fromRevision)).create();
      watcher = w;
      if (closed) void w.cancel();
      w.on('data', (res) => {
        if (res.compact_revision && Number(res.compact_revision) > 0) {
          failure = new CompactedError(fromRevision, Number(res.compact_revision));
          return notify();
        }
        if (res.events?.length) queue.push(groupByRevision(res.events as never, Date.now()));
        notify();
      });
      w.on('error', (e: Error) => {
        failure = /compacted/.test(e.message) ? new CompactedError(fromRevision, undefined) : e;
        notify();
      });
    });
    started.catch((e: Error) => {
      failure = e;
      notify();
    });
    return {
      close: () => {
        closed = true;
        void watcher?.cancel().catch(() => undefined);
        notify();
      },
      batches: () => ({
        [Symbol.asyncIterator]: async function* () {
          for (;;) {
            while (queue.length) yield queue.shift()!;
            if (failure) throw failure;
            if (closed) return;
            await new Promise<void>((r) => (wake = r));
          }
        },
      }),
    };
  }

  async leaseTtl(lease: string): Promise<number | undefined> {
    const c = await this.client;
    const r = await c.leaseClient.leaseTimeToLive({ ID: lease });
    const granted = Number(r.grantedTTL);
    return Number(r.TTL) < 0 || !granted ? undefined : granted;
  }

  async hasHistoryFrom(revision: number): Promise<boolean> {
    const c = await this.client;
    try {
      await c.kv.range({ key: ALL, range_end: ALL, revision: String(revision), limit: 1, keys_only: true, count_only: true });
      return true;
    } catch (e) {
      if (/compacted/.test(messageOf(e))) return false;
      // Not written yet: nothing of it was compacted.
      if (/future revision/.test(messageOf(e))) return true;
      throw e;
    }
  }

  close(): void {
    void this.client.then((c) => c.close()).catch(() => undefined);
  }
}

/** The temporary etcd a point-in-time replay writes into. */
export class Etcd3ReplayTarget implements ReplayTarget {
  private readonly client: Promise<Etcd3>;

  constructor(conn: EtcdConnection) {
    this.client = openEtcd3(conn.endpoints, conn, 30_000);
  }

  async apply(events: readonly KvEvent[]): Promise<number> {
    const c = await this.client;
    const r = await c.kv.txn({
      success: events.map((e) =>
        e.type === 'put' ? { request_put: { key: e.key, value: e.value ?? Buffer.alloc(0), ...(e.lease ? { lease: e.lease } : {}) } } : { request_delete_range: { key: e.key } },
      ),
    });
    return Number(r.header.revision);
  }

  async grantLease(lease: string, ttlSeconds: number): Promise<void> {
    const c = await this.client;
    try {
      await c.leaseClient.leaseGrant({ ID: lease, TTL: ttlSeconds });
    } catch (e) {
      // Granted already (the base snapshot holds it): it stays as it is.
      if (!/lease already exists/.test(messageOf(e))) throw new EtcdRecoverError('ETCD_ERROR', `granting lease ${lease} in the replay: ${messageOf(e)}`);
    }
  }

  async keepAlive(leases: readonly string[]): Promise<void> {
    if (!leases.length) return;
    const c = await this.client;
    const stream = await c.leaseClient.leaseKeepAlive();
    try {
      let pending = leases.length;
      await new Promise<void>((resolve, reject) => {
        stream.on('data', () => {
          if (--pending === 0) resolve();
        });
        stream.on('error', reject);
        for (const id of leases) stream.write({ ID: id });
      });
    } finally {
      stream.end();
    }
  }

  close(): void {
    void this.client.then((c) => c.close()).catch(() => undefined);
  }
}
