import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AgeKeys,
  Catalog,
  Etcd3Gateway,
  EtcdRecoverError,
  S3ObjectStore,
  Sandbox,
  SandboxTarget,
  type RecoveryTarget,
  clusterNameProblem,
  defaultSandboxDir,
  type EtcdConnection,
  type EtcdGateway,
  type S3Config,
  type S3Sse,
  parseContract,
  sseCustomerKey,
  type RecoveryContract,
  type CompanionSource,
} from '@etcd-recover/core';

export interface TargetFlags {
  kubeconfig?: string | undefined;
  context?: string | undefined;
  namespace?: string | undefined;
  cluster?: string | undefined;
  'sandbox-dir'?: string | undefined;
  endpoints?: string | undefined;
  'contract-file'?: string | undefined;
  'etcd-tls-dir'?: string | undefined;
  cacert?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  bucket?: string | undefined;
  prefix?: string | undefined;
  's3-endpoint'?: string | undefined;
  's3-region'?: string | undefined;
  's3-path-style'?: boolean | undefined;
  's3-ca-file'?: string | undefined;
  's3-credentials-file'?: string | undefined;
  's3-profile'?: string | undefined;
  's3-checksum'?: 'when_supported' | 'when_required' | undefined;
  's3-sse'?: 'SSE-S3' | 'SSE-KMS' | 'SSE-C' | undefined;
  's3-sse-kms-key-id'?: string | undefined;
  's3-sse-c-key-file'?: string | undefined;
  'age-recipients-file'?: string | undefined;
  'age-identity-file'?: string | undefined;
}

/**
 * The composition root: turns flags into the core's ports. Targets, in order:
 * --endpoints (etcd members addressed directly, bucket from flags), else the
 * local sandbox when its state folder exists. (Kubernetes comes from the
 * recovery contract; see docs/design.md.)
 */
export class Target {
  readonly kind: 'sandbox' | 'endpoints' | 'kubernetes';
  readonly cluster: string;
  readonly sandbox: Sandbox | undefined;
  private gw: EtcdGateway | undefined;
  private st: S3ObjectStore | undefined;
  private rt: SandboxTarget | undefined;
  private krt: RecoveryTarget | undefined;
  private readonly etcd: EtcdConnection | undefined;
  private readonly s3: S3Config | undefined;
  /** Why the bucket cannot be opened yet (an SSE-C key the contract needs and nobody gave); thrown by store(). */
  private readonly s3Problem: EtcdRecoverError | undefined;

  readonly contract: RecoveryContract | undefined;
  /** Kubernetes mode: the API client config and the declared cluster's namespace. */
  readonly kube: { kc: import('@kubernetes/client-node').KubeConfig; namespace: string; configMap: string } | undefined;

  /**
   * Resolves the target. Kubernetes when a kube flag (--kubeconfig, --context, -n) is given: the
   * cluster comes from its recovery contract (--cluster, or the only one in the namespace), the
   * bucket from the contract and its credentials Secret (S3 flags override).
   */
  static async open(flags: TargetFlags): Promise<Target> {
    if (!flags.endpoints && !flags['contract-file'] && (flags.kubeconfig || flags.context || flags.namespace)) {
      const k = await import('@etcd-recover/core/kubernetes');
      const { kc, namespace } = k.loadKubeConfig({
        ...(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {}),
        ...(flags.context ? { context: flags.context } : {}),
        ...(flags.namespace ? { namespace: flags.namespace } : {}),
      });
      const declared = await k.resolveDeclaredCluster(kc, namespace, flags.cluster);
      const creds = flags['s3-credentials-file'] ? undefined : await k.readBackupCredentials(kc, declared.contract);
      // The SSE-C key from the Secret the contract names, unless the flags give one (or another mode).
      const wantsSecretKey = !flags.bucket && !flags['s3-sse-c-key-file'] && (flags['s3-sse'] ?? declared.contract.backup.sse?.mode) === 'SSE-C';
      const sseCustomerKey = wantsSecretKey ? await k.readSseCustomerKey(kc, declared.contract) : undefined;
      const t = new Target(flags, {
        contract: declared.contract,
        kube: { kc, namespace: declared.namespace, configMap: declared.configMap },
        ...(creds ? { credentials: creds } : {}),
        ...(sseCustomerKey ? { sseCustomerKey } : {}),
      });
      t.keys = await loadKeys(flags, t, () => k.readAgeKeySecret(kc, declared.contract));
      return t;
    }
    const t = new Target(flags);
    t.keys = await loadKeys(flags, t);
    return t;
  }

  /** The age keys backups are encrypted and opened with (none: plain backups). */
  keys: AgeKeys | undefined;

  /**
   * Where a backup taken here finds the companion resources the contract names: the Kubernetes API,
   * from inside a backup Job (its ServiceAccount may get exactly those). Undefined anywhere else.
   */
  async companionSource(): Promise<CompanionSource | undefined> {
    const names = this.contract?.companions;
    if (!names || this.kind === 'kubernetes' || (!names.secrets.length && !names.configMaps.length)) return undefined;
    const k = await import('@etcd-recover/core/kubernetes');
    return k.inClusterCompanionSource(this.contract!.namespace, names);
  }

  constructor(
    flags: TargetFlags,
    resolved?: { contract: RecoveryContract; kube: NonNullable<Target['kube']>; credentials?: { accessKeyId: string; secretAccessKey: string }; sseCustomerKey?: string },
  ) {
    const contract = resolved?.contract ?? (flags['contract-file'] && !flags.endpoints ? readContract(flags['contract-file']) : undefined);
    this.kube = resolved?.kube;
    const sandbox = flags.endpoints || contract ? undefined : Sandbox.load(flags['sandbox-dir'] ?? defaultSandboxDir());
    this.contract = contract;
    const tls = flags.cacert || flags.cert || flags['etcd-tls-dir'] ? readTls(flags) : undefined;
    if (flags.endpoints) {
      this.kind = 'endpoints';
      this.etcd = {
        endpoints: flags.endpoints.split(',').map((s) => s.trim()).filter(Boolean).map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`)),
        ...(tls ? { tls } : {}),
      };
    } else if (resolved) {
      // From the operator's machine the members' DNS names do not resolve: etcd is reached through Jobs and the API.
      this.kind = 'kubernetes';
      this.etcd = undefined;
    } else if (contract) {
      this.kind = 'endpoints';
      this.etcd = { endpoints: contract.etcd.members.map((m) => m.clientURL), ...(tls ? { tls } : {}) };
    } else if (sandbox) {
      this.kind = 'sandbox';
      // A TLS sandbox brings its own CA and client certificate; --cacert/--cert/--key/--etcd-tls-dir,
      // when given, replace those pieces (a plaintext sandbox has no use for them).
      const own = sandbox.etcdConnection();
      this.etcd = own.tls && tls ? { ...own, tls: { ...own.tls, ...tls } } : own;
    } else {
      this.kind = 'endpoints';
      this.etcd = undefined;
    }
    this.sandbox = sandbox;
    this.cluster = flags.cluster ?? contract?.cluster ?? sandbox?.state.cluster ?? 'default';
    const problem = clusterNameProblem(this.cluster);
    if (problem) throw new EtcdRecoverError('USAGE', `cluster name "${this.cluster}" ${problem}`);

    const base: Partial<S3Config> = flags.bucket
      ? {}
      : sandbox
        ? sandbox.s3Config()
        : contract
          ? { ...contractS3(contract), ...(resolved?.credentials ? { credentials: resolved.credentials } : {}) }
          : {};
    const bucket = flags.bucket ?? base.bucket;
    // The contract's encryption goes with the contract's bucket (as its endpoint and prefix do).
    const sse = bucket ? resolveSse(flags, !flags.bucket && !sandbox ? contract : undefined, resolved?.sseCustomerKey) : undefined;
    this.s3Problem = sse instanceof EtcdRecoverError ? sse : undefined;
    if (bucket) {
      this.s3 = {
        ...base,
        bucket,
        ...(flags.prefix !== undefined ? { prefix: flags.prefix } : {}),
        ...(flags['s3-endpoint'] ? { endpoint: flags['s3-endpoint'] } : {}),
        ...(flags['s3-region'] ? { region: flags['s3-region'] } : {}),
        ...(flags['s3-path-style'] !== undefined ? { forcePathStyle: flags['s3-path-style'] } : {}),
        ...(flags['s3-ca-file'] ? { caFile: flags['s3-ca-file'] } : {}),
        ...(flags['s3-credentials-file'] ? { credentialsFile: flags['s3-credentials-file'] } : {}),
        ...(flags['s3-profile'] ? { profile: flags['s3-profile'] } : {}),
        ...(flags['s3-checksum'] ? { checksumMode: flags['s3-checksum'] } : {}),
        ...(sse && !(sse instanceof EtcdRecoverError) ? { sse } : {}),
      };
      if (flags['s3-credentials-file']) delete this.s3.credentials;
    }
  }

  describe(): string {
    if (this.kind === 'kubernetes') return `kubernetes ${this.kube!.namespace}/${this.contract!.etcd.statefulSet}`;
    return this.kind === 'sandbox' ? `sandbox ${this.sandbox!.dir}` : `etcd ${this.etcd?.endpoints.join(',') ?? '(none)'}`;
  }

  gateway(): EtcdGateway {
    if (this.kind === 'kubernetes') {
      throw new EtcdRecoverError('CONFIG', 'this command does not reach etcd members directly on Kubernetes yet', {
        hint: 'on Kubernetes the commands that need etcd run Jobs in the cluster',
      });
    }
    if (!this.etcd) {
      throw new EtcdRecoverError('CONFIG', 'no etcd target: no sandbox is running and no --endpoints were given', {
        hint: 'start one with `kubectl etcd-recover sandbox up`, or pass --endpoints http://HOST:2379,…',
      });
    }
    this.gw ??= new Etcd3Gateway(this.etcd);
    return this.gw;
  }

  /** The connection gateway() uses (the archiver's watch opens its own client on it). */
  connection(): EtcdConnection {
    this.gateway();
    return this.etcd!;
  }

  store(): S3ObjectStore {
    if (!this.s3) {
      throw new EtcdRecoverError('CONFIG', 'no backup bucket: pass --bucket (and --s3-endpoint for S3-compatible stores)', {
        hint: 'or run against the sandbox, which has its own bucket',
      });
    }
    if (this.s3Problem) throw this.s3Problem;
    this.st ??= new S3ObjectStore(this.s3);
    return this.st;
  }

  /** The place a recovery runs against: the sandbox, or a declared cluster on Kubernetes. */
  async recoveryTarget(): Promise<RecoveryTarget> {
    if (this.kind === 'kubernetes') {
      const { KubernetesRecoveryTarget } = await import('@etcd-recover/core/kubernetes');
      this.krt ??= new KubernetesRecoveryTarget(this.kube!.kc, this.contract!);
      return this.krt;
    }
    if (this.sandbox) {
      this.rt ??= new SandboxTarget(this.sandbox, this.etcd);
      return this.rt;
    }
    throw new EtcdRecoverError('CONFIG', 'recoveries need a target that can stop, restore and start members: the sandbox or a Kubernetes cluster', {
      hint: 'start the sandbox with `kubectl etcd-recover sandbox up`, or point at a declared cluster with -n NAMESPACE [--cluster NAME] on Kubernetes',
    });
  }

  catalog(): Catalog {
    return new Catalog(this.store(), this.cluster, this.keys);
  }

  close(): void {
    this.rt?.close();
    this.gw?.close();
    this.st?.destroy();
  }
}

/**
 * The age keys, first found wins: --age-recipients-file/--age-identity-file (or their env vars, which
 * the in-cluster jobs get pointing at the mounted key Secret), else the key Secret the contract names
 * (read through the API from an operator's machine), else the sandbox's own key. A contract that
 * names a key Secret never falls back to plain backups: a missing key is an error.
 */
async function loadKeys(flags: TargetFlags, t: Target, fromSecret?: () => Promise<{ recipients?: string; identities?: string; source: string } | undefined>): Promise<AgeKeys | undefined> {
  const read = (p: string, what: string) => {
    try {
      return readFileSync(p, 'utf8');
    } catch (e) {
      throw new EtcdRecoverError('CONFIG', `cannot read the age ${what} file ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  };
  const rf = flags['age-recipients-file'];
  const idf = flags['age-identity-file'];
  if (rf || idf) {
    return AgeKeys.parse({
      ...(rf ? { recipients: read(rf, 'recipients') } : {}),
      ...(idf ? { identities: read(idf, 'identity') } : {}),
      source: [rf ? `file ${rf}` : '', idf ? `file ${idf}` : ''].filter(Boolean).join(' and '),
    });
  }
  const named = t.contract?.backup.encryption;
  if (named && fromSecret) {
    try {
      const got = await fromSecret();
      if (got) return AgeKeys.parse(got);
    } catch (e) {
      // An operator who may not read the key Secret can still list, create (a Job encrypts) and plan;
      // whatever must decrypt says so then, naming --age-identity-file.
      if (!(e instanceof EtcdRecoverError && e.code === 'ENCRYPTION_KEY')) throw e;
      process.stderr.write(`warning: ${e.message}\n`);
      return undefined;
    }
  }
  if (named) {
    throw new EtcdRecoverError('ENCRYPTION_KEY', `the recovery contract says backups are encrypted (key Secret ${named.secretName}), but no age key was given`, {
      hint: 'pass --age-identity-file (and --age-recipients-file), or run with access to that Secret',
    });
  }
  const sb = t.sandbox?.state.encryption;
  if (sb && !flags.bucket) return AgeKeys.parse({ identities: read(sb.identityFile, 'identity'), source: `the sandbox key ${sb.identityFile}` });
  return undefined;
}

/**
 * Server-side encryption: --s3-sse (else the contract's mode; a key file alone means SSE-C, a KMS key
 * id alone SSE-KMS), the KMS key id from the flag or the contract, the SSE-C key from
 * --s3-sse-c-key-file (the in-cluster jobs get it pointing at the mounted Secret), else the key read
 * from the contract's Secret. An SSE-C key the contract needs and nobody gave is returned as the
 * error store() throws: commands that never open the bucket (defrag) run without it.
 */
function resolveSse(flags: TargetFlags, contract: RecoveryContract | undefined, secretKey: string | undefined): S3Sse | EtcdRecoverError | undefined {
  const fromContract = contract?.backup.sse;
  const keyFile = flags['s3-sse-c-key-file'];
  const kmsKeyId = flags['s3-sse-kms-key-id'];
  const mode = flags['s3-sse'] ?? fromContract?.mode ?? (keyFile ? 'SSE-C' : kmsKeyId !== undefined ? 'SSE-KMS' : undefined);
  if (keyFile && mode !== 'SSE-C') {
    throw new EtcdRecoverError('USAGE', `--s3-sse-c-key-file is for SSE-C, but the server-side encryption is ${mode}${flags['s3-sse'] ? '' : " (the recovery contract's)"}`, { hint: 'pass --s3-sse SSE-C with it, or leave it out' });
  }
  if (kmsKeyId !== undefined && mode !== 'SSE-KMS') {
    throw new EtcdRecoverError('USAGE', `--s3-sse-kms-key-id is for SSE-KMS, but the server-side encryption is ${mode}${flags['s3-sse'] ? '' : " (the recovery contract's)"}`, { hint: 'pass --s3-sse SSE-KMS with it, or leave it out' });
  }
  if (mode === undefined) return undefined;
  if (mode === 'SSE-S3') return { mode };
  if (mode === 'SSE-KMS') {
    const id = kmsKeyId ?? (fromContract?.mode === 'SSE-KMS' ? fromContract.kmsKeyId : undefined);
    return { mode, ...(id !== undefined ? { kmsKeyId: id } : {}) };
  }
  if (keyFile) return { mode, key: readSseKeyFile(keyFile) };
  if (secretKey) return { mode, key: secretKey };
  const secret = fromContract?.mode === 'SSE-C' ? fromContract.customerKeySecret : undefined;
  if (!secret) {
    throw new EtcdRecoverError('USAGE', '--s3-sse SSE-C needs the key: pass --s3-sse-c-key-file FILE (the base64 of 32 bytes)', { hint: 'make one with: head -c 32 /dev/urandom | base64, and keep it safe: without it the backups cannot be read' });
  }
  return new EtcdRecoverError('ENCRYPTION_KEY', `the bucket uses SSE-C (key Secret ${contract!.namespace}/${secret}), but no SSE-C key was given`, {
    hint: 'pass --s3-sse-c-key-file (or set ETCD_RECOVER_S3_SSE_C_KEY_FILE), or run with access to that Secret',
  });
}

/** Reads an SSE-C key file; errors name the file, never its content. */
function readSseKeyFile(path: string): string {
  let key: string;
  try {
    key = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new EtcdRecoverError('CONFIG', `cannot read the SSE-C key file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, { cause: e });
  }
  try {
    sseCustomerKey({ mode: 'SSE-C', key });
  } catch (e) {
    const err = e as EtcdRecoverError;
    throw new EtcdRecoverError('CONFIG', `SSE-C key file ${path}: ${err.message}`, err.hint ? { hint: err.hint } : {});
  }
  return key;
}

function readContract(path: string): RecoveryContract {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new EtcdRecoverError('CONFIG', `cannot read the recovery contract ${path}`, { cause: e });
  }
  return parseContract(text, path);
}

function contractS3(c: RecoveryContract): Partial<S3Config> {
  const b = c.backup;
  return {
    bucket: b.bucket,
    prefix: b.prefix,
    ...(b.endpoint ? { endpoint: b.endpoint } : {}),
    ...(b.region ? { region: b.region } : {}),
    ...(b.forcePathStyle !== undefined ? { forcePathStyle: b.forcePathStyle } : {}),
    ...(b.checksumMode ? { checksumMode: b.checksumMode } : {}),
  };
}

function readTls(flags: TargetFlags): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const dir = flags['etcd-tls-dir'];
  if (dir) {
    flags = { ...flags, cacert: flags.cacert ?? join(dir, 'ca.crt'), cert: flags.cert ?? join(dir, 'tls.crt'), key: flags.key ?? join(dir, 'tls.key') };
  }
  const read = (p: string | undefined, what: string) => {
    if (!p) return undefined;
    try {
      return readFileSync(p);
    } catch (e) {
      throw new EtcdRecoverError('CONFIG', `cannot read etcd ${what} ${p}`, { cause: e });
    }
  };
  const ca = read(flags.cacert, 'CA');
  const cert = read(flags.cert, 'certificate');
  const key = read(flags.key, 'key');
  if (Boolean(cert) !== Boolean(key)) throw new EtcdRecoverError('USAGE', '--cert and --key go together');
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}
