import { Agent, request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';

/**
 * A minimal JSON client for the Kubernetes API over mutual TLS or a bearer token, used by the
 * process kubelet and the harness bootstrap. (Tests use @kubernetes/client-node; this exists so the
 * kubelet writes exactly the JSON it means, with its own node identity, and can stream watches.)
 */
export interface RestCredentials {
  server: string;
  caFile: string;
  certFile?: string;
  keyFile?: string;
  token?: string;
}

export class RestError extends Error {
  constructor(readonly code: number, readonly body: any, method: string, path: string) {
    super(`${method} ${path}: HTTP ${code}${body?.message ? ` ${body.message}` : typeof body === 'string' ? ` ${body.slice(0, 300)}` : ''}`);
  }
}

export class Rest {
  private readonly agent: Agent;
  private readonly url: URL;
  constructor(readonly creds: RestCredentials) {
    this.url = new URL(creds.server);
    this.agent = new Agent({
      keepAlive: true,
      maxSockets: 32,
      ca: readFileSync(creds.caFile),
      ...(creds.certFile ? { cert: readFileSync(creds.certFile), key: readFileSync(creds.keyFile!) } : {}),
    });
  }

  private open(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = 30_000): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const req = httpsRequest(
        {
          agent: this.agent,
          host: this.url.hostname,
          port: this.url.port || 443,
          method,
          path,
          timeout: timeoutMs,
          headers: {
            accept: 'application/json',
            ...(this.creds.token ? { authorization: `Bearer ${this.creds.token}` } : {}),
            ...(data !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(data) } : {}),
          },
        },
        resolve,
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
      req.on('error', reject);
      req.end(data);
    });
  }

  async req<T = any>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const res = await this.open(method, path, body, contentType);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let parsed: any = text;
    try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
    if ((res.statusCode ?? 0) >= 300) throw new RestError(res.statusCode ?? 0, parsed, method, path);
    return parsed as T;
  }

  get<T = any>(path: string) { return this.req<T>('GET', path); }
  post<T = any>(path: string, body: unknown) { return this.req<T>('POST', path, body); }
  put<T = any>(path: string, body: unknown) { return this.req<T>('PUT', path, body); }
  del<T = any>(path: string, body?: unknown) { return this.req<T>('DELETE', path, body); }
  mergePatch<T = any>(path: string, body: unknown) { return this.req<T>('PATCH', path, body, 'application/merge-patch+json'); }
  strategicPatch<T = any>(path: string, body: unknown) { return this.req<T>('PATCH', path, body, 'application/strategic-merge-patch+json'); }

  /**
   * Streams a watch; calls onEvent per event; resolves when the server closes the stream
   * (or `signal` aborts), rejects on transport errors or a non-200 answer.
   */
  async watch(path: string, onEvent: (type: string, obj: any) => void, signal: AbortSignal): Promise<void> {
    const res = await this.open('GET', path, undefined, undefined, 0);
    if (res.statusCode !== 200) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      throw new RestError(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), 'WATCH', path);
    }
    const abort = () => res.destroy();
    signal.addEventListener('abort', abort, { once: true });
    let buf = '';
    try {
      for await (const chunk of res) {
        buf += (chunk as Buffer).toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line);
          onEvent(ev.type, ev.object);
        }
      }
    } catch (e) {
      if (!signal.aborted) throw e;
    } finally {
      signal.removeEventListener('abort', abort);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}

export const isNotFound = (e: unknown) => e instanceof RestError && e.code === 404;
export const isConflict = (e: unknown) => e instanceof RestError && e.code === 409;

/**
 * List + watch of one resource collection, keeping a local store (a small reflector).
 * `onChange` runs after every applied event and after each (re)list.
 */
export class Reflector<T extends { metadata: any } = any> {
  readonly items = new Map<string, T>();
  private ctl = new AbortController();
  private synced!: Promise<void>;
  private markSynced!: () => void;
  private stopped = false;

  constructor(
    private readonly rest: Rest,
    private readonly path: string,
    private readonly query: string,
    private readonly onChange: (type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'SYNC', obj: T | undefined, old: T | undefined) => void,
    private readonly onError: (e: unknown) => void = () => {},
  ) {
    this.synced = new Promise((r) => (this.markSynced = r));
  }

  static key(o: { metadata: any }): string {
    return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
  }

  start(): Promise<void> {
    void this.loop();
    return this.synced;
  }

  private async loop(): Promise<void> {
    let backoff = 200;
    while (!this.stopped) {
      try {
        const list = await this.rest.get(`${this.path}?${this.query}`);
        const seen = new Set<string>();
        for (const it of list.items as T[]) {
          const k = Reflector.key(it);
          seen.add(k);
          const old = this.items.get(k);
          this.items.set(k, it);
          if (!old) this.onChange('ADDED', it, undefined);
          else if (old.metadata.resourceVersion !== it.metadata.resourceVersion) this.onChange('MODIFIED', it, old);
        }
        for (const [k, old] of [...this.items]) {
          if (!seen.has(k)) {
            this.items.delete(k);
            this.onChange('DELETED', old, old);
          }
        }
        this.markSynced();
        this.onChange('SYNC', undefined, undefined);
        let rv: string = list.metadata.resourceVersion;
        backoff = 200;
        // Watch until the server closes or the rv expires, then resume (or relist on 410).
        for (;;) {
          if (this.stopped) return;
          let gone = false;
          await this.rest.watch(
            `${this.path}?${this.query}${this.query ? '&' : ''}watch=1&allowWatchBookmarks=true&resourceVersion=${rv}&timeoutSeconds=300`,
            (type, obj) => {
              if (type === 'BOOKMARK') { rv = obj.metadata.resourceVersion; return; }
              if (type === 'ERROR') { gone = true; return; }
              rv = obj.metadata.resourceVersion;
              const k = Reflector.key(obj);
              const old = this.items.get(k);
              if (type === 'DELETED') this.items.delete(k);
              else this.items.set(k, obj);
              this.onChange(type as 'ADDED' | 'MODIFIED' | 'DELETED', obj, old);
            },
            this.ctl.signal,
          );
          if (gone) break;
        }
      } catch (e) {
        if (this.stopped) return;
        this.onError(e);
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.ctl.abort();
  }
}
