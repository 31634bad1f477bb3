import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdRecoverError } from '../errors.js';
import { Etcd3Gateway } from '../etcd/etcd3-gateway.js';
import type { EtcdConnection } from '../etcd/etcd-gateway.js';
import { S3ObjectStore } from '../store/s3-object-store.js';
import type { S3Config } from '../store/s3-config.js';
import { findEtcdBinaries, findMinio, type EtcdBinaries } from '../binaries.js';
import { freePort } from '../net-ports.js';
import { isAlive, spawnDetached, stopProcess } from '../processes.js';
import { Catalog } from '../snapshot/catalog.js';
import { decideStartup } from '../recovery/startup-decision.js';
import { readBucketFacts } from '../recovery/startup-facts.js';
import { createSandboxPki, readClientTls, type MemberTls, type SandboxTls } from './sandbox-pki.js';

export const SANDBOX_FORMAT_VERSION = 1;

export interface SandboxMember {
  name: string;
  clientURL: string;
  peerURL: string;
  dataDir: string;
  logFile: string;
  pid?: number;
  /** Its server and peer certificates: in a TLS sandbox (https client and peer URLs). */
  tls?: MemberTls;
}

export interface SandboxState {
  formatVersion: number;
  dir: string;
  cluster: string;
  token: string;
  fsync: boolean;
  createdAt: string;
  binaries: EtcdBinaries;
  members: SandboxMember[];
  /** Absent: plaintext. Present: the throwaway CA, and the client certificate every command presents. */
  tls?: SandboxTls;
  /** Absent: backups are plain. Present: the age identity (mode 0600) every command that targets the sandbox encrypts and decrypts with. */
  encryption?: { identityFile: string; recipient: string };
  /** Absent when the sandbox runs without an object store (a restore drill). */
  minio?: {
    url: string;
    dataDir: string;
    logFile: string;
    pid?: number;
    bucket: string;
    accessKey: string;
    secretKey: string;
    binary: string;
  };
}

export interface SandboxUpOptions {
  dir?: string;
  members?: number;
  cluster?: string;
  bucket?: string;
  /** etcd --unsafe-no-fsync unless true. Default false (the sandbox is for demos and tests). */
  fsync?: boolean;
  /** Run a MinIO bucket beside the members. Default true; a restore drill reads another bucket and needs none. */
  store?: boolean;
  /** Start the members now. Default true; a drill restores data into them first. */
  startMembers?: boolean;
  /**
   * https client and peer URLs with client-cert-auth and peer-client-cert-auth, certificates from a
   * throwaway CA under `<dir>/tls` (made with the openssl CLI). Default false. An existing sandbox
   * keeps what it was created with; asking a plaintext one for TLS is refused.
   */
  tls?: boolean;
  /** A new sandbox encrypts its backups (age, a key made under `<dir>/age/identity.txt`). Default false. */
  encrypt?: boolean;
  /** Address MinIO listens on. Default 127.0.0.1 (tests pass a bridge address that pods can reach). */
  storeHost?: string;
  /**
   * The folder holding etcd, etcdctl and etcdutl a new sandbox runs (recorded in sandbox.json).
   * Default $ETCD_BIN_DIR, else the build cache, else PATH.
   */
  etcdBinDir?: string;
  onProgress?: (message: string) => void;
  signal?: AbortSignal;
}

/** A throwaway age identity for the sandbox's backups, written as `age-keygen` writes one (mode 0600). */
async function createSandboxAgeKey(dir: string): Promise<{ identityFile: string; recipient: string }> {
  const { generateX25519Identity, identityToRecipient } = await import('age-encryption');
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const identityFile = join(dir, 'identity.txt');
  writeFileSync(identityFile, `# created: ${new Date().toISOString()}\n# public key: ${recipient}\n${identity}\n`, { mode: 0o600 });
  return { identityFile, recipient };
}

export function defaultSandboxDir(): string {
  return process.env['ETCD_RECOVER_SANDBOX'] ?? join(process.env['XDG_STATE_HOME'] ?? join(homedir(), '.local', 'state'), 'etcd-recover', 'sandbox');
}

/**
 * The embedded local target: an N-member etcd cluster and a MinIO bucket run
 * as processes on loopback, with all state under one folder (sandbox.json
 * describes it). Processes are detached so they outlive the command that
 * started them; `down` stops them.
 */
export class Sandbox {
  private constructor(public state: SandboxState) {}

  static stateFile(dir: string): string {
    return join(dir, 'sandbox.json');
  }

  static load(dir = defaultSandboxDir()): Sandbox | undefined {
    const f = Sandbox.stateFile(dir);
    if (!existsSync(f)) return undefined;
    const state = JSON.parse(readFileSync(f, 'utf8')) as SandboxState;
    if (state.formatVersion !== SANDBOX_FORMAT_VERSION) {
      throw new EtcdRecoverError('CONFIG', `sandbox at ${dir} has format ${state.formatVersion}; expected ${SANDBOX_FORMAT_VERSION}`, {
        hint: 'remove it with `kubectl etcd-recover sandbox down --purge`',
      });
    }
    return new Sandbox(state);
  }

  static async up(opts: SandboxUpOptions = {}): Promise<Sandbox> {
    const dir = opts.dir ?? defaultSandboxDir();
    const existing = Sandbox.load(dir);
    if (existing) {
      if (opts.tls && !existing.state.tls) {
        throw new EtcdRecoverError('USAGE', `the sandbox at ${dir} was created without TLS`, {
          hint: 'remove it with `kubectl etcd-recover sandbox down --purge`, then `sandbox up --tls`',
        });
      }
      if (opts.encrypt && !existing.state.encryption) {
        throw new EtcdRecoverError('USAGE', `the sandbox at ${dir} was created without backup encryption`, {
          hint: 'remove it with `kubectl etcd-recover sandbox down --purge`, then `sandbox up --encrypt`',
        });
      }
      if (opts.startMembers !== false) await existing.start(opts.onProgress);
      return existing;
    }
    const n = opts.members ?? 3;
    if (n < 1 || n > 7) throw new EtcdRecoverError('USAGE', `a sandbox has 1 to 7 members, not ${n}`);
    const binaries = opts.etcdBinDir ? findEtcdBinaries(opts.etcdBinDir) : findEtcdBinaries();
    const withStore = opts.store !== false;
    const minioBin = withStore ? findMinio() : undefined;
    mkdirSync(dir, { recursive: true });
    const names = Array.from({ length: n }, (_, i) => `etcd-${i}`);
    const pki = opts.tls ? await createSandboxPki(join(dir, 'tls'), names) : undefined;
    const scheme = pki ? 'https' : 'http';
    const encryption = opts.encrypt ? await createSandboxAgeKey(join(dir, 'age')) : undefined;
    const members: SandboxMember[] = [];
    for (const name of names) {
      const mdir = join(dir, 'members', name);
      mkdirSync(mdir, { recursive: true });
      members.push({
        name,
        clientURL: `${scheme}://127.0.0.1:${await freePort()}`,
        peerURL: `${scheme}://127.0.0.1:${await freePort()}`,
        dataDir: join(mdir, 'data'),
        logFile: join(mdir, 'etcd.log'),
        ...(pki ? { tls: pki.members[name]! } : {}),
      });
    }
    const minioDir = join(dir, 'minio');
    if (withStore) mkdirSync(join(minioDir, 'data'), { recursive: true });
    const state: SandboxState = {
      formatVersion: SANDBOX_FORMAT_VERSION,
      dir,
      cluster: opts.cluster ?? 'sandbox',
      token: `sandbox-${randomBytes(4).toString('hex')}`,
      fsync: opts.fsync ?? false,
      createdAt: new Date().toISOString(),
      binaries,
      members,
      ...(pki ? { tls: pki.tls } : {}),
      ...(encryption ? { encryption } : {}),
      ...(minioBin
        ? {
            minio: {
              url: `http://${opts.storeHost ?? '127.0.0.1'}:${await freePort(opts.storeHost)}`,
              dataDir: join(minioDir, 'data'),
              logFile: join(minioDir, 'minio.log'),
              bucket: opts.bucket ?? 'etcd-backups',
              accessKey: 'sandbox-' + randomBytes(4).toString('hex'),
              secretKey: randomBytes(18).toString('base64url'),
              binary: minioBin,
            },
          }
        : {}),
    };
    const sb = new Sandbox(state);
    sb.save();
    if (opts.startMembers !== false) await sb.start(opts.onProgress);
    else await sb.startMinio(opts.onProgress);
    return sb;
  }

  get dir(): string {
    return this.state.dir;
  }

  save(): void {
    const f = Sandbox.stateFile(this.state.dir);
    writeFileSync(f + '.tmp', JSON.stringify(this.state, null, 2) + '\n', { mode: 0o600 });
    renameSync(f + '.tmp', f);
  }

  /** Whether a member's data dir holds a member (what etcd starts on). */
  hasData(name: string): boolean {
    return existsSync(join(this.member(name).dataDir, 'member'));
  }

  /**
   * Starts whatever is not running: MinIO, then every member — but never a member whose data is
   * gone beside members that hold data (etcd would start it as `new` under its old identity), and
   * never an all-empty cluster while the bucket holds a verified backup of it (the start-up
   * decision of member-init, docs/design.md "Member start-up decision"). Members with data are
   * started either way; then it refuses, naming `member replace` or `quorum`.
   */
  async start(onProgress?: (m: string) => void): Promise<void> {
    await this.startMinio(onProgress);
    const members = this.state.members;
    const toStart = members.filter((m) => !isAlive(m.pid));
    const holders = members.filter((m) => isAlive(m.pid) || this.hasData(m.name));
    const empty = toStart.filter((m) => !this.hasData(m.name));
    if (empty.length && holders.length) {
      const startable = toStart.filter((m) => this.hasData(m.name));
      for (const m of startable) this.startMember(m.name, 'new');
      if (startable.length) onProgress?.(`starting etcd members with data ${startable.map((m) => m.name).join(', ')}`);
      const names = empty.map((m) => m.name);
      const lost = `${names.join(', ')} ${names.length === 1 ? 'has' : 'have'} no data while ${holders.map((m) => m.name).join(', ')} ${holders.length === 1 ? 'holds' : 'hold'} data`;
      if (holders.length > members.length / 2) {
        await this.waitHealthy(startable.map((m) => m.name), 60_000);
        throw new EtcdRecoverError('PRECONDITION', `${lost}: starting ${names.length === 1 ? 'it' : 'them'} as new would corrupt the cluster; not started`, {
          hint: `replace ${names.length === 1 ? 'it' : 'them'} (the others keep a quorum): ${names.map((n) => `kubectl etcd-recover member replace ${n}`).join('; ')}`,
        });
      }
      throw new EtcdRecoverError('QUORUM_LOST', `${lost}, fewer than a quorum: starting the empty ${names.length === 1 ? 'member' : 'members'} as new would form a cluster beside that data; not started`, {
        hint: 'restore the cluster: kubectl etcd-recover quorum (member replace needs a quorum)',
      });
    }
    if (empty.length && this.state.minio) {
      // Every member is empty: a first start, or every data dir lost. Bootstrap only when the bucket proves there is nothing to lose.
      const store = new S3ObjectStore(this.s3Config());
      try {
        const bucket = await readBucketFacts(new Catalog(store, this.state.cluster));
        const a = decideStartup({ member: empty.map((m) => m.name).join(', '), data: { present: false }, peers: { kind: 'none' }, bucket, waitedSeconds: 0, peerWaitSeconds: 0, joinWaitSeconds: 0 });
        if (a.action === 'refuse') throw new EtcdRecoverError(a.code, empty.length > 1 ? a.message.replace(/ is empty, /, ' are empty, ') : a.message, { hint: a.hint, retryable: a.retryable });
      } finally {
        store.destroy();
      }
    }
    for (const m of toStart) this.startMember(m.name, 'new');
    if (toStart.length) onProgress?.(`starting etcd members ${toStart.map((m) => m.name).join(', ')}`);
    await this.waitHealthy(toStart.map((m) => m.name), 60_000);
  }

  member(name: string): SandboxMember {
    const m = this.state.members.find((x) => x.name === name);
    if (!m) throw new EtcdRecoverError('USAGE', `no member ${name} in the sandbox (members: ${this.state.members.map((x) => x.name).join(', ')})`);
    return m;
  }

  initialCluster(): string {
    return this.state.members.map((m) => `${m.name}=${m.peerURL}`).join(',');
  }

  /** etcd's command line for a member; the initial-cluster flags only matter for an empty data dir. */
  memberArgs(name: string, initialState: 'new' | 'existing', initialCluster = this.initialCluster()): string[] {
    const m = this.member(name);
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientURL,
      '--advertise-client-urls', m.clientURL,
      '--listen-peer-urls', m.peerURL,
      '--initial-advertise-peer-urls', m.peerURL,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', initialState,
      '--initial-cluster-token', this.state.token,
      '--log-level', 'warn',
    ];
    if (!this.state.fsync) args.push('--unsafe-no-fsync');
    const ca = this.state.tls?.caFile;
    if (m.tls && ca) {
      // As member-init's client- and peer-transport-security blocks: every client and peer must present a certificate of this CA.
      args.push(
        '--cert-file', m.tls.certFile, '--key-file', m.tls.keyFile, '--trusted-ca-file', ca, '--client-cert-auth',
        '--peer-cert-file', m.tls.peerCertFile, '--peer-key-file', m.tls.peerKeyFile, '--peer-trusted-ca-file', ca, '--peer-client-cert-auth',
      );
    }
    return args;
  }

  startMember(name: string, initialState: 'new' | 'existing', initialCluster?: string): void {
    const m = this.member(name);
    if (isAlive(m.pid)) return;
    m.pid = spawnDetached(this.state.binaries.etcd, this.memberArgs(name, initialState, initialCluster), m.logFile);
    this.save();
  }

  async stopMember(name: string, opts: { kill?: boolean } = {}): Promise<void> {
    const m = this.member(name);
    await stopProcess(m.pid, opts.kill ? 0 : 10_000);
    delete m.pid;
    this.save();
  }

  isRunning(name: string): boolean {
    return isAlive(this.member(name).pid);
  }

  async startMinio(onProgress?: (m: string) => void): Promise<void> {
    const mi = this.state.minio;
    if (!mi) return;
    if (!isAlive(mi.pid)) {
      onProgress?.(`starting MinIO at ${mi.url}`);
      const addr = mi.url.replace(/^http:\/\//, '');
      mi.pid = spawnDetached(mi.binary, ['server', mi.dataDir, '--address', addr, '--console-address', '127.0.0.1:0', '--quiet'], mi.logFile, {
        MINIO_ROOT_USER: mi.accessKey,
        MINIO_ROOT_PASSWORD: mi.secretKey,
        MINIO_BROWSER: 'off',
        MINIO_UPDATE: 'off',
      });
      this.save();
    }
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const r = await fetch(`${mi.url}/minio/health/live`);
        if (r.ok) break;
      } catch {
        /* not yet */
      }
      if (!isAlive(mi.pid)) throw new EtcdRecoverError('STORE_UNREACHABLE', `MinIO exited; see ${mi.logFile}`);
      if (Date.now() > deadline) throw new EtcdRecoverError('TIMEOUT', `MinIO did not become ready; see ${mi.logFile}`);
      await sleep(100);
    }
    const store = new S3ObjectStore(this.s3Config());
    try {
      await store.ensureBucket();
    } finally {
      store.destroy();
    }
  }

  /** Waits until the named members answer status and the cluster has a leader. */
  async waitHealthy(names = this.state.members.map((m) => m.name), timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const conn = this.etcdConnection();
    for (const name of names) {
      const m = this.member(name);
      for (;;) {
        const gw = new Etcd3Gateway({ ...conn, endpoints: [m.clientURL], timeoutMs: 1_000 });
        try {
          const s = await gw.status(m.clientURL);
          if (s.leaderId !== '0') break;
        } catch (e) {
          // Starting; but a TLS failure will not go away by waiting.
          if (e instanceof EtcdRecoverError && e.code === 'ETCD_TLS') throw e;
        } finally {
          gw.close();
        }
        if (!isAlive(m.pid)) {
          throw new EtcdRecoverError('ETCD_ERROR', `etcd member ${name} exited while starting; see ${m.logFile}`, {
            hint: 'the last lines of the log name the cause',
          });
        }
        if (Date.now() > deadline) throw new EtcdRecoverError('TIMEOUT', `etcd member ${name} did not become healthy within ${timeoutMs / 1000}s; see ${m.logFile}`);
        await sleep(100);
      }
    }
  }

  endpoints(): string[] {
    return this.state.members.map((m) => m.clientURL);
  }

  /** How a client reaches the members: their client URLs, and in a TLS sandbox its CA and client certificate. */
  etcdConnection(): EtcdConnection {
    return { endpoints: this.endpoints(), ...(this.state.tls ? { tls: readClientTls(this.state.tls) } : {}) };
  }

  s3Config(): S3Config {
    const mi = this.state.minio;
    if (!mi) throw new EtcdRecoverError('CONFIG', `the sandbox at ${this.dir} has no object store`);
    return {
      bucket: mi.bucket,
      endpoint: mi.url,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: mi.accessKey, secretAccessKey: mi.secretKey },
    };
  }

  async down(opts: { purge?: boolean } = {}): Promise<void> {
    await Promise.all(this.state.members.map((m) => stopProcess(m.pid)));
    for (const m of this.state.members) delete m.pid;
    if (this.state.minio) {
      await stopProcess(this.state.minio.pid);
      delete this.state.minio.pid;
    }
    if (opts.purge) rmSync(this.state.dir, { recursive: true, force: true });
    else this.save();
  }
}
