import { Flags } from '@oclif/core';

/** kubectl's own flags, implemented by the plugin (kubectl rejects flags before the plugin name). */
export const kubeFlags = {
  kubeconfig: Flags.string({ description: 'Path to the kubeconfig file (kubectl semantics: else KUBECONFIG, else ~/.kube/config).', helpGroup: 'KUBERNETES' }),
  context: Flags.string({ description: 'The kubeconfig context to use.', helpGroup: 'KUBERNETES' }),
  namespace: Flags.string({ char: 'n', description: 'Namespace of the declared cluster (else the context\'s, else "default").', helpGroup: 'KUBERNETES' }),
};

/** Where the cluster and its backups are. kubectl passes everything after the plugin name through. */
export const targetFlags = {
  ...kubeFlags,
  cluster: Flags.string({
    description: 'Logical cluster name: the folder of its backups in the bucket, and (on Kubernetes) the declared cluster. Default: the sandbox\'s, else "default".',
    env: 'ETCD_RECOVER_CLUSTER',
    helpGroup: 'TARGET',
  }),
  'sandbox-dir': Flags.string({
    description: 'State folder of the local sandbox (the default target when it exists).',
    env: 'ETCD_RECOVER_SANDBOX',
    helpGroup: 'TARGET',
  }),
  endpoints: Flags.string({
    description: 'etcd client URLs, comma-separated: target these members directly instead of the sandbox.',
    env: 'ETCDCTL_ENDPOINTS',
    helpGroup: 'TARGET',
  }),
  'contract-file': Flags.string({
    description: 'A recovery contract (JSON) naming members and bucket: how the in-cluster jobs find everything.',
    env: 'ETCD_RECOVER_CONTRACT',
    helpGroup: 'TARGET',
  }),
  'etcd-tls-dir': Flags.string({
    description: 'Folder with ca.crt, tls.crt and tls.key for etcd client TLS (instead of --cacert/--cert/--key).',
    env: 'ETCD_RECOVER_ETCD_TLS_DIR',
    helpGroup: 'TARGET',
  }),
  cacert: Flags.string({ description: 'CA bundle to verify etcd members (PEM).', env: 'ETCDCTL_CACERT', helpGroup: 'TARGET' }),
  cert: Flags.string({ description: 'Client certificate for etcd (PEM).', env: 'ETCDCTL_CERT', helpGroup: 'TARGET' }),
  key: Flags.string({ description: 'Client key for etcd (PEM).', env: 'ETCDCTL_KEY', helpGroup: 'TARGET' }),
};

export const storeFlags = {
  bucket: Flags.string({ description: 'Backup bucket.', env: 'ETCD_RECOVER_BUCKET', helpGroup: 'BACKUP STORE' }),
  prefix: Flags.string({ description: 'Key prefix inside the bucket.', env: 'ETCD_RECOVER_PREFIX', helpGroup: 'BACKUP STORE' }),
  's3-endpoint': Flags.string({ description: 'S3-compatible endpoint URL (MinIO, Ceph RGW, …); default AWS.', env: 'AWS_ENDPOINT_URL_S3', helpGroup: 'BACKUP STORE' }),
  's3-region': Flags.string({ description: 'S3 region (default us-east-1).', env: 'AWS_REGION', helpGroup: 'BACKUP STORE' }),
  's3-path-style': Flags.boolean({ description: 'Path-style addressing (default on when --s3-endpoint is set).', allowNo: true, helpGroup: 'BACKUP STORE' }),
  's3-ca-file': Flags.string({ description: 'Extra CA bundle (PEM) for the S3 endpoint.', helpGroup: 'BACKUP STORE' }),
  's3-credentials-file': Flags.string({ description: 'Credentials file: AWS INI, KEY=VALUE lines or JSON. Default: the standard AWS chain.', env: 'ETCD_RECOVER_S3_CREDENTIALS_FILE', helpGroup: 'BACKUP STORE' }),
  's3-profile': Flags.string({ description: 'Profile in an INI credentials file.', env: 'AWS_PROFILE', helpGroup: 'BACKUP STORE' }),
  's3-checksum': Flags.option({
    description: 'SDK checksum mode: when_supported (SDK default) or when_required (for stores that reject the newer CRC checksums).',
    options: ['when_supported', 'when_required'] as const,
    env: 'ETCD_RECOVER_S3_CHECKSUM',
    helpGroup: 'BACKUP STORE',
  })(),
  's3-sse': Flags.option({
    description: 'Server-side encryption of every object written: SSE-S3, SSE-KMS or SSE-C (customer key: needs --s3-sse-c-key-file and an https endpoint). Default: the recovery contract\'s, else the bucket\'s default.',
    options: ['SSE-S3', 'SSE-KMS', 'SSE-C'] as const,
    env: 'ETCD_RECOVER_S3_SSE',
    helpGroup: 'BACKUP STORE',
  })(),
  's3-sse-kms-key-id': Flags.string({
    description: 'With SSE-KMS: the KMS key id, ARN or alias (default: the bucket\'s default KMS key).',
    env: 'ETCD_RECOVER_S3_SSE_KMS_KEY_ID',
    helpGroup: 'BACKUP STORE',
  }),
  's3-sse-c-key-file': Flags.string({
    description: 'With SSE-C: a file holding the key (base64 of 32 bytes), sent with every read and write. Never printed or logged. Default: the Secret the recovery contract names.',
    env: 'ETCD_RECOVER_S3_SSE_C_KEY_FILE',
    helpGroup: 'BACKUP STORE',
  }),
  'age-recipients-file': Flags.string({
    description: 'age recipients (public keys "age1…", one per line): new backups are encrypted for them. Default: the identity file\'s own keys, else the key Secret the contract names.',
    env: 'ETCD_RECOVER_AGE_RECIPIENTS_FILE',
    helpGroup: 'ENCRYPTION',
  }),
  'age-identity-file': Flags.string({
    description: 'age identity file (as age-keygen writes it): opens encrypted backups. Never printed or logged.',
    env: 'ETCD_RECOVER_AGE_IDENTITY_FILE',
    helpGroup: 'ENCRYPTION',
  }),
};

export const outputFlag = {
  output: Flags.option({
    char: 'o',
    description: 'Output format.',
    options: ['table', 'wide', 'json', 'yaml'] as const,
    default: 'table' as const,
  })(),
};

export const quietFlag = {
  quiet: Flags.boolean({ char: 'q', description: 'No progress on stderr.' }),
};

export const yesFlag = {
  yes: Flags.boolean({ char: 'y', description: 'Do not ask for confirmation (required without a terminal).' }),
};
