import { strict as assert } from 'node:assert';
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError, RecoveryLock, layout, type ObjectStore, type PutOptions, type Sandbox } from '@etcd-recover/core';
import { startSandbox, stopSandbox, storeFor } from '../../support/sandbox.js';

const code = (c: string) => (e: unknown) => {
  assert.ok(e instanceof EtcdRecoverError, String(e));
  assert.equal(e.code, c, e.message);
  return true;
};

/** Runs fn with this process's clock moved by `skewMs` (what a taker with a wrong clock sees). */
async function withClockSkew<T>(skewMs: number, fn: () => Promise<T>): Promise<T> {
  const realNow = Date.now;
  const RealDate = Date;
  class Skewed extends RealDate {
    constructor(...a: unknown[]) {
      if (a.length === 0) super(realNow() + skewMs);
      else super(...(a as [string]));
    }
    static override now() {
      return realNow() + skewMs;
    }
  }
  globalThis.Date = Skewed as DateConstructor;
  try {
    return await fn();
  } finally {
    globalThis.Date = RealDate;
  }
}

/** Fault injection that cannot be caused on a real S3 server: a store that ignores write conditions. */
function ignoringConditions(inner: ObjectStore): ObjectStore {
  return new Proxy(inner, {
    get(t, p, r) {
      if (p === 'put') return (key: string, body: Buffer | string, opts: PutOptions = {}) => t.put(key, body, { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.contentType ? { contentType: opts.contentType } : {}) });
      const v = Reflect.get(t, p, r);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

describe('the fenced recovery lock on a real MinIO', function () {
  this.timeout(120_000);
  let sb: Sandbox;
  before(async () => {
    sb = await startSandbox({ members: 1, cluster: 'lock-it' });
  });
  after(async () => stopSandbox(sb));

  it('gives every run a unique id, and a second run is refused while the first renews it', async () => {
    const store = storeFor(sb);
    const a = new RecoveryLock(store, 'c1');
    const b = new RecoveryLock(store, 'c1');
    assert.notEqual(a.runId, b.runId);
    await a.acquire('rec-a', 'quorum', 'quorum --yes');
    // Same host, same pid: what used to identify a holder. The run id tells them apart.
    await assert.rejects(b.acquire('rec-b', 'quorum', 'quorum --yes'), code('LOCKED'));
    await a.fence();
    await a.release();
    await b.acquire('rec-b', 'quorum', 'quorum --yes');
    await b.release();
  });

  it('judges a takeover by the bucket\'s clock, not the taker\'s', async () => {
    const store = storeFor(sb);
    // A live holder on another node renewed the lock just now.
    const now = new Date().toISOString();
    const holder = { runId: 'run-on-node-b', host: 'node-b', pid: 1, recoveryId: 'rec-a', kind: 'quorum', command: 'quorum --yes', startedAt: now, heartbeatAt: now };
    assert.ok(await store.put(layout.lock('c2'), JSON.stringify(holder), { ifNoneMatch: true }));
    // A taker whose clock runs 10 minutes ahead: by its own clock that heartbeat is long stale.
    const taker = await withClockSkew(10 * 60_000, async () => {
      const b = new RecoveryLock(store, 'c2', { staleAfterMs: 30_000 });
      return b.acquire('rec-b', 'quorum', 'quorum --yes').then(
        () => 'took over',
        (e: EtcdRecoverError) => e.code,
      );
    });
    assert.equal(taker, 'LOCKED');
    assert.equal(JSON.parse((await store.read(layout.lock('c2')))!.body.toString()).runId, 'run-on-node-b');
    await store.delete(layout.lock('c2'));
  });

  it('a holder that stopped renewing loses the lock to a taker, and its next fence stops it', async () => {
    const store = storeFor(sb);
    const lost: string[] = [];
    const a = new RecoveryLock(store, 'c3', { staleAfterMs: 2_000, onLost: (w) => lost.push(w) });
    await a.acquire('rec-a', 'quorum', 'quorum --yes');
    a.detach(); // frozen: no more heartbeats (a paused VM, a SIGSTOPped process)
    const b = new RecoveryLock(store, 'c3', { staleAfterMs: 2_000 });
    // MinIO's Last-Modified has one-second resolution: wait until the store's clock says stale.
    let took: { previous?: { runId: string } } | undefined;
    for (let i = 0; i < 20 && !took; i++) {
      await sleep(500);
      took = await b.acquire('rec-a', 'quorum', 'quorum --yes').catch(() => undefined);
    }
    assert.ok(took?.previous, 'the taker took over the stale lock');
    assert.equal(took.previous.runId, a.runId);
    await assert.rejects(a.fence(), code('LOCK_LOST'));
    assert.equal(lost.length, 1);
    assert.equal(a.held, false);
    // The old holder's release leaves the new holder's lock alone.
    await a.release();
    const cur = JSON.parse((await store.read(layout.lock('c3')))!.body.toString());
    assert.equal(cur.runId, b.runId);
    await b.fence();
    await b.release();
  });

  it('renewal failures past half the stale window mark the lock lost', async () => {
    const store = storeFor(sb);
    let failing = false;
    const flaky = new Proxy(store, {
      get(t, p, r) {
        const v = Reflect.get(t, p, r);
        if (p === 'put') return (...args: Parameters<ObjectStore['put']>) => (failing ? Promise.reject(new Error('connect ECONNREFUSED')) : t.put(...args));
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    const lost: string[] = [];
    const a = new RecoveryLock(flaky, 'c4', { staleAfterMs: 4_000, onLost: (w) => lost.push(w) });
    await a.acquire('rec-a', 'quorum', 'quorum --yes');
    failing = true;
    await sleep(4_500);
    assert.equal(lost.length, 1, 'lost after the renewals failed');
    assert.match(lost[0]!, /could not be renewed/);
    failing = false;
    await assert.rejects(a.fence(), code('LOCK_LOST'));
    await store.delete(layout.lock('c4'));
  });

  it('refuses a store that ignores conditional writes', async () => {
    const a = new RecoveryLock(ignoringConditions(storeFor(sb)), 'c5');
    await assert.rejects(a.acquire('rec-a', 'quorum', 'quorum --yes'), (e: unknown) => {
      code('STORE_UNSAFE')(e);
      assert.match((e as Error).message, /ignores conditional writes/);
      return true;
    });
    assert.equal(await storeFor(sb).read(layout.lock('c5')), undefined, 'no lock object written');
  });
});
