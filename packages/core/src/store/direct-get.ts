import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/**
 * Name resolution for the store's connections: the system resolver, except that names under
 * `.localhost` are the loopback address, as RFC 6761 (section 6.3) asks of resolution APIs and as
 * systemd-resolved, curl and browsers do — but glibc without nss-myhostname does not. It makes
 * virtual-hosted addressing (`<bucket>.s3.localhost:PORT`) work against a local S3 with no
 * /etc/hosts entry per bucket. Plain `localhost` is left to the system (/etc/hosts has it).
 */
export function localhostLookup(
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  if (!/\.localhost\.?$/i.test(hostname)) {
    (dnsLookup as unknown as (h: string, o: LookupOptions, cb: typeof callback) => void)(hostname, options, callback);
    return;
  }
  const six = (options.family as unknown) === 6 || (options.family as unknown) === 'IPv6';
  const address = six ? '::1' : '127.0.0.1';
  const family = six ? 6 : 4;
  process.nextTick(() => (options.all ? callback(null, [{ address, family }]) : callback(null, address, family)));
}

/**
 * A streamed GET of one large object read straight off the socket into a few
 * pooled buffers.
 *
 * Why: through Node's HTTP client every socket read lands in a fresh 64 KiB
 * buffer, so streaming a 1 GB snapshot makes ~16,000 of them. They are freed
 * only by the garbage collector, and the process's memory swells by 50–70 MB
 * while it downloads (measured: a 1.3 GB GetObject through the SDK peaked at
 * 145–160 MB RSS and took 1.8–2.0 s; read this way, 61 MB and 0.8 s). Here the
 * socket reads (`onread`) straight into 1 MiB chunks taken from a pool of four:
 * each read lands at the free end of the current chunk. Only the response head,
 * and a read while no chunk is free, go to one spare buffer, copied on arrival.
 *
 * The chunks are *borrowed*: one is valid until the consumer asks for the next,
 * then its memory is reused. Only callers that finish with a chunk before they
 * pull the next one may use this (GetOptions.borrow).
 *
 * Only the answer this path is for is handled here: a 200/206 with a
 * Content-Length body and no content coding. Anything else (an error status,
 * a chunked or encoded body, a failure before the response head) throws
 * DirectGetDeclined, and the caller repeats that attempt through the AWS SDK,
 * which turns it into the usual typed error. A connection lost mid-body throws
 * an ECONNRESET-coded error, which the caller resumes from its offset.
 */
export class DirectGetDeclined extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DirectGetDeclined';
  }
}

export interface DirectGetRequest {
  url: URL;
  /** Signed request headers (host, x-amz-date, authorization, range, if-match, SSE-C…). */
  headers: Record<string, string>;
  ca?: Buffer;
  /** Idle time on the socket before the transfer is abandoned. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called once with the response head. */
  onHead?: (head: { status: number; etag?: string; contentLength: number }) => void;
}

const CHUNK = 1 << 20;
const POOL = 4;
/**
 * One socket read. 256 KiB (was 64): a 1 GB verify from MinIO on loopback took 3% less time plain and
 * 4% less encrypted, alternating runs (fewer reads, wake-ups and copies); 1 MiB made the encrypted
 * read burstier and slower (docs/benchmarks.md, "Encryption (age)").
 */
const READ = 256 * 1024;
const MAX_HEAD = 64 * 1024;

function withCode(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

export async function* directGet(req: DirectGetRequest): AsyncGenerator<Buffer, void, undefined> {
  req.signal?.throwIfAborted();
  const free: Buffer[] = [];
  let allocated = 0;
  const ready: { buf: Buffer; len: number }[] = [];
  let cur: Buffer | undefined;
  let curLen = 0;
  let lent: Buffer | undefined;
  let phase = 'head' as 'head' | 'body' | 'done'; // changed by the socket callbacks
  let head = '';
  let remaining = 0;
  let length = 0;
  let failure: Error | undefined;
  let paused = false;
  let wake: (() => void) | undefined;
  const readBuf = Buffer.allocUnsafeSlow(READ);

  const take = (): Buffer | undefined => free.pop() ?? (allocated < POOL ? (allocated++, Buffer.allocUnsafeSlow(CHUNK)) : undefined);
  const capacity = () => (cur ? CHUNK - curLen : 0) + (free.length + POOL - allocated) * CHUNK;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const fail = (e: Error) => {
    if (phase === 'done' || failure) return;
    failure = e;
    socket.destroy();
    notify();
  };
  const flush = () => {
    if (cur && curLen > 0) {
      ready.push({ buf: cur, len: curLen });
      cur = undefined;
      curLen = 0;
    }
  };

  /** Where the next socket read lands: the current chunk's free end once the body has begun, else the spare buffer. */
  const nextRead = (): Buffer => {
    if (phase !== 'body' || failure) return readBuf;
    cur ??= take();
    return cur && curLen < CHUNK ? cur.subarray(curLen, Math.min(CHUNK, curLen + READ)) : readBuf;
  };

  const onData = (n: number, buf: Buffer): boolean => {
    if (failure || phase === 'done') return false;
    let off = 0;
    if (buf !== readBuf) {
      // Read in place (nextRead): the bytes are already at the end of the current chunk.
      if (!cur || buf.buffer !== cur.buffer || buf.byteOffset !== cur.byteOffset + curLen) {
        fail(withCode('internal: a socket read landed outside the current chunk', 'EPROTO'));
        return false;
      }
      const k = Math.min(n, remaining);
      curLen += k;
      remaining -= k;
      off = n;
    }
    if (phase === 'head') {
      const before = head.length;
      head += buf.toString('latin1', 0, n);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HEAD) fail(new DirectGetDeclined('response head too large'));
        return true;
      }
      const lines = head.slice(0, end).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
      const h = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) h.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
      const cl = h.get('content-length');
      const coding = h.get('content-encoding');
      if ((status !== 200 && status !== 206) || cl === undefined || !/^\d+$/.test(cl) || h.has('transfer-encoding') || (coding && coding !== 'identity')) {
        fail(new DirectGetDeclined(`HTTP ${status || '?'}${h.has('transfer-encoding') ? ' (chunked)' : ''}: left to the SDK`));
        return false;
      }
      remaining = length = Number(cl);
      const etag = h.get('etag');
      req.onHead?.({ status, contentLength: remaining, ...(etag ? { etag } : {}) });
      phase = 'body';
      off = end + 4 - before;
    }
    while (off < n && remaining > 0) {
      if (!cur || curLen === CHUNK) {
        flush();
        cur = take();
        if (!cur) {
          // Cannot happen: reading pauses before the pool runs out (see below).
          fail(withCode('internal: download buffer pool exhausted', 'EPROTO'));
          return false;
        }
      }
      const k = Math.min(n - off, remaining, CHUNK - curLen);
      buf.copy(cur, curLen, off, off + k);
      curLen += k;
      off += k;
      remaining -= k;
    }
    if (remaining === 0) {
      flush();
      phase = 'done';
      socket.destroy();
    } else if (curLen === CHUNK) flush();
    notify();
    if (phase === 'body' && capacity() < READ) {
      paused = true;
      return false;
    }
    return true;
  };

  const opts = {
    host: req.url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(req.url.port || (req.url.protocol === 'https:' ? 443 : 80)),
    lookup: localhostLookup,
    onread: { buffer: nextRead, callback: onData },
  };
  const socket: Socket =
    req.url.protocol === 'https:'
      ? tlsConnect({ ...opts, ...(isIP(opts.host) ? {} : { servername: opts.host }), ...(req.ca ? { ca: req.ca } : {}) })
      : netConnect(opts);
  socket.setTimeout(req.timeoutMs, () => fail(withCode(`no data for ${req.timeoutMs} ms`, 'ETIMEDOUT')));
  socket.on('error', (e) => (phase === 'head' ? fail(new DirectGetDeclined(e.message, { cause: e })) : fail(e)));
  socket.on('close', () => {
    if (phase === 'head') fail(new DirectGetDeclined('connection closed before the response'));
    else if (phase === 'body') fail(withCode(`connection closed after ${length - remaining} of ${length} bytes`, 'ECONNRESET'));
  });
  const onAbort = () => fail(Object.assign(new Error('aborted'), { name: 'AbortError' }));
  req.signal?.addEventListener('abort', onAbort, { once: true });
  const lines = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}\r\n`);
  socket.write(`GET ${req.url.pathname}${req.url.search} HTTP/1.1\r\n${lines.join('')}connection: close\r\n\r\n`);

  try {
    for (;;) {
      if (lent) {
        free.push(lent);
        lent = undefined;
        if (paused && capacity() >= READ) {
          paused = false;
          socket.resume();
        }
      }
      const next = ready.shift();
      if (next) {
        lent = next.buf;
        yield next.buf.subarray(0, next.len);
        continue;
      }
      if (failure) throw failure;
      if (phase === 'done') return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    req.signal?.removeEventListener('abort', onAbort);
    if (phase !== 'done') {
      phase = 'done';
      socket.destroy();
    }
  }
}
