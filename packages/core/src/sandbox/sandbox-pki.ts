import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { EtcdRecoverError } from '../errors.js';
import type { EtcdTls } from '../etcd/etcd-gateway.js';

const run = promisify(execFile);

/** The sandbox's throwaway CA and client certificate, as recorded in sandbox.json. */
export interface SandboxTls {
  /** Folder of the CA and every certificate (0700; keys 0600). */
  dir: string;
  caFile: string;
  caKeyFile: string;
  /** What every command presents to the members: an --etcd-tls-dir (ca.crt, tls.crt, tls.key). */
  clientDir: string;
}

/** One member's certificates: one for its client URL, one for its peer URL (both serverAuth + clientAuth). */
export interface MemberTls {
  certFile: string;
  keyFile: string;
  peerCertFile: string;
  peerKeyFile: string;
}

/** The client TLS material of a sandbox, read from its files. */
export function readClientTls(t: SandboxTls): EtcdTls {
  const read = (f: string) => {
    try {
      return readFileSync(join(t.clientDir, f));
    } catch (e) {
      throw new EtcdRecoverError('CONFIG', `the sandbox's client TLS file ${join(t.clientDir, f)} cannot be read`, {
        cause: e,
        hint: 'recreate the sandbox: `kubectl etcd-recover sandbox down --purge`, then `sandbox up --tls`',
      });
    }
  };
  return { ca: read('ca.crt'), cert: read('tls.crt'), key: read('tls.key') };
}

/**
 * A throwaway PKI for a TLS sandbox, made with the openssl CLI (node:crypto cannot issue X.509
 * certificates): a CA, per member a server and a peer certificate (SANs 127.0.0.1 and localhost,
 * serverAuth and clientAuth: etcd dials its own client port and its peers with them), and one
 * client certificate. ECDSA P-256: fast to generate, accepted by Go and Node.
 */
export async function createSandboxPki(dir: string, members: string[]): Promise<{ tls: SandboxTls; members: Record<string, MemberTls> }> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tls: SandboxTls = { dir, caFile: join(dir, 'ca.crt'), caKeyFile: join(dir, 'ca.key'), clientDir: join(dir, 'client') };
  await openssl([
    'req', '-x509', '-new', '-nodes',
    '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-keyout', tls.caKeyFile, '-out', tls.caFile,
    '-days', '3650', '-subj', `/CN=etcd-recover sandbox CA ${randomBytes(3).toString('hex')}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  chmodSync(tls.caKeyFile, 0o600);
  const issue = (file: string, cn: string, usage: 'client' | 'both') => issueLeaf(tls, file, cn, usage);
  const out: Record<string, MemberTls> = {};
  mkdirSync(tls.clientDir, { recursive: true, mode: 0o700 });
  await Promise.all([
    issue(join(tls.clientDir, 'tls'), 'etcd-recover-sandbox-client', 'client').then(() => copyFileSync(tls.caFile, join(tls.clientDir, 'ca.crt'))),
    ...members.map(async (name) => {
      const mdir = join(dir, name);
      mkdirSync(mdir, { recursive: true, mode: 0o700 });
      const m: MemberTls = { certFile: join(mdir, 'server.crt'), keyFile: join(mdir, 'server.key'), peerCertFile: join(mdir, 'peer.crt'), peerKeyFile: join(mdir, 'peer.key') };
      await Promise.all([issue(join(mdir, 'server'), name, 'both'), issue(join(mdir, 'peer'), name, 'both')]);
      out[name] = m;
    }),
  ]);
  return { tls, members: out };
}

/** `<base>.crt` and `<base>.key` (0600), signed by the sandbox CA. */
async function issueLeaf(ca: SandboxTls, base: string, cn: string, usage: 'client' | 'both'): Promise<void> {
  const key = `${base}.key`;
  const csr = `${base}.csr`;
  const ext = `${base}.ext`;
  await openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`]);
  chmodSync(key, 0o600);
  writeFileSync(
    ext,
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${usage === 'client' ? 'clientAuth' : 'serverAuth,clientAuth'}`,
      ...(usage === 'both' ? ['subjectAltName=IP:127.0.0.1,DNS:localhost'] : []),
    ].join('\n') + '\n',
  );
  await openssl([
    'x509', '-req', '-in', csr, '-CA', ca.caFile, '-CAkey', ca.caKeyFile,
    '-set_serial', `0x${randomBytes(12).toString('hex')}`,
    '-out', `${base}.crt`, '-days', '3650', '-extfile', ext,
  ]);
  rmSync(csr, { force: true });
  rmSync(ext, { force: true });
}

/** Whether the openssl CLI runs here (what the TLS mode needs). */
export async function opensslAvailable(): Promise<boolean> {
  try {
    await run('openssl', ['version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 60_000 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new EtcdRecoverError('CONFIG', 'the sandbox\'s TLS mode makes its certificates with the openssl CLI, which is not on PATH', {
        hint: 'install openssl (e.g. `apt-get install openssl`), or run the sandbox without --tls',
      });
    }
    throw new EtcdRecoverError('INTERNAL', `openssl ${args[0]} failed making the sandbox certificates: ${(err.stderr ?? err.message).trim().split('\n')[0]}`, { cause: e });
  }
}
