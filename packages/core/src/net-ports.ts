import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { EtcdRecoverError } from './errors.js';

/**
 * A free port for a long-lived listener, chosen BELOW the kernel's ephemeral
 * range: a port inside it can be taken at any moment as the source port of
 * some outgoing connection, and a member restarted later on "its" port would
 * then fail with EADDRINUSE.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    /* not Linux */
  }
  const min = 10000;
  const max = Math.max(min + 1000, low - 1);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = min + Math.floor(Math.random() * (max - min));
    if (taken.has(port)) continue;
    if (await bindable(port, host)) {
      taken.add(port);
      return port;
    }
  }
  throw new EtcdRecoverError('INTERNAL', 'no free port below the ephemeral range');
}

const taken = new Set<number>();

function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}
