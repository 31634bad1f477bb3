/** Deterministic names of everything the component creates (the recovery contract records them). */
export function namesFor(name: string) {
  return {
    statefulSet: name,
    headless: `${name}-discovery`,
    client: `${name}-client`,
    pdb: name,
    volumeClaimTemplate: 'data',
    pvc: (pod: string) => `data-${pod}`,
    pod: (i: number) => `${name}-${i}`,
    credentials: `${name}-backup-credentials`,
    contract: `${name}-recovery-contract`,
    /** Created by the first job that reports (not by the component: Pulumi would see the jobs' writes as drift). */
    status: `${name}-recovery-status`,
    exporter: `${name}-exporter`,
    archiver: `${name}-archiver`,
    sa: (job: string) => `${name}-${job}`,
    cron: (job: string) => `${name}-${job}`,
  };
}

export const PORTS = { client: 2379, peer: 2380, metrics: 2381 } as const;
export const MOUNT = '/var/lib/etcd';
export const DATA_DIR = '/var/lib/etcd/data';
export const CONFIG_FILE = '/var/lib/etcd/etcd.conf.yml';
export const TLS_DIR = '/etc/etcd/tls';
/** Where jobs mount the age key Secret (backup.encryption): `recipients`, and where allowed `identity`. */
export const AGE_DIR = '/etc/etcd-recover-age';
export const AGE_VOLUME = 'age-key';
/** Where the jobs that talk to the bucket mount the SSE-C key Secret (backup.sse.customerKeySecret), its one key `sse-c-key`. */
export const SSE_C_DIR = '/etc/etcd-recover-sse-c';
export const SSE_C_VOLUME = 'sse-c-key';
