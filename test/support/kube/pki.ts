import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './util.js';

/**
 * A throwaway PKI made with the openssl CLI (node:crypto cannot issue X.509 certificates).
 * ECDSA P-256 keys: fast to generate, accepted by Go and Node.
 */
export interface CertPaths {
  cert: string;
  key: string;
}

export interface LeafSpec {
  cn: string;
  o?: string[];
  /** IP and DNS subject alternative names (server certificates). */
  ips?: string[];
  dns?: string[];
  usage: 'client' | 'server' | 'both';
}

export class Pki {
  readonly ca: CertPaths;
  private constructor(readonly dir: string) {
    this.ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  }

  static async create(dir: string, cn = 'etcd-recover-test-ca'): Promise<Pki> {
    mkdirSync(dir, { recursive: true });
    const pki = new Pki(dir);
    await run('openssl', [
      'req', '-x509', '-new', '-nodes',
      '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-keyout', pki.ca.key, '-out', pki.ca.cert,
      '-days', '3650', '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
    ]);
    return pki;
  }

  async issue(name: string, spec: LeafSpec): Promise<CertPaths> {
    const out = { cert: join(this.dir, `${name}.crt`), key: join(this.dir, `${name}.key`) };
    const csr = join(this.dir, `${name}.csr`);
    const ext = join(this.dir, `${name}.ext`);
    const subj = [...(spec.o ?? []).map((o) => `/O=${o}`), `/CN=${spec.cn}`].join('');
    await run('openssl', ['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', out.key, '-out', csr, '-subj', subj]);
    const eku = spec.usage === 'client' ? 'clientAuth' : spec.usage === 'server' ? 'serverAuth' : 'serverAuth,clientAuth';
    const sans = [...(spec.ips ?? []).map((i) => `IP:${i}`), ...(spec.dns ?? []).map((d) => `DNS:${d}`)];
    writeFileSync(
      ext,
      [
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${eku}`,
        ...(sans.length ? [`subjectAltName=${sans.join(',')}`] : []),
      ].join('\n') + '\n',
    );
    await run('openssl', [
      'x509', '-req', '-in', csr, '-CA', this.ca.cert, '-CAkey', this.ca.key,
      '-set_serial', `0x${randomBytes(12).toString('hex')}`,
      '-out', out.cert, '-days', '365', '-extfile', ext,
    ]);
    return out;
  }

  /** RSA key pair for service-account token signing (private) and verification (public). */
  async serviceAccountKeys(): Promise<{ key: string; pub: string }> {
    const key = join(this.dir, 'sa.key');
    const pub = join(this.dir, 'sa.pub');
    await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key]);
    await run('openssl', ['pkey', '-in', key, '-pubout', '-out', pub]);
    return { key, pub };
  }
}
