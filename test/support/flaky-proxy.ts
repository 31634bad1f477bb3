import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';

/**
 * A real HTTP proxy in front of MinIO that cuts the connection of the first
 * `cuts` GETs of objects ending in `cutGetsOfSuffix` after `cutAfterBytes`:
 * an object-store outage in the middle of a download. Requests are forwarded
 * with their Host header intact, so SigV4 signatures still verify.
 */
export async function startFlakyS3Proxy(target: string, o: { cutGetsOfSuffix: string; cutAfterBytes: number; cuts: number }): Promise<{ url: string; cutsMade: () => number; close: () => Promise<void> }> {
  const t = new URL(target);
  let made = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const cut = req.method === 'GET' && (req.url ?? '').split('?')[0]!.endsWith(o.cutGetsOfSuffix) && made < o.cuts;
    const up = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (!cut) {
        upRes.pipe(res);
        return;
      }
      made++;
      let sent = 0;
      upRes.on('data', (chunk: Buffer) => {
        if (sent + chunk.length >= o.cutAfterBytes) {
          res.write(chunk.subarray(0, Math.max(0, o.cutAfterBytes - sent)));
          upRes.destroy();
          res.socket?.destroy();
          return;
        }
        sent += chunk.length;
        res.write(chunk);
      });
      upRes.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    cutsMade: () => made,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
