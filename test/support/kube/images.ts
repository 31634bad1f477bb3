import { existsSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';

/**
 * What a container image means to the process kubelet: folders of host binaries standing in for the
 * image's filesystem, and the image's ENTRYPOINT/CMD/ENV.
 */
export interface ImageSpec {
  /** Searched first (by basename) for command[0], and put first on the container's PATH. */
  binDirs: string[];
  /** Image ENTRYPOINT (used when the container has no `command`). */
  entrypoint?: string[];
  /** Image CMD (used when the container has neither `command` nor `args`). */
  cmd?: string[];
  env?: Record<string, string>;
  /**
   * Where the image's own binaries appear inside the container (read-only overlays of binDirs over
   * the host folder). Default ['/usr/local/bin', '/usr/bin'] (and so /bin on a merged-/usr host).
   */
  overlayAt?: string[];
  /**
   * A real image instead of host binaries: its unpacked root filesystem (rootfs.ts). The container
   * then runs chrooted into an overlay of it and sees no host binaries; binDirs is unused.
   */
  rootfs?: string;
  /** The image's USER (numeric), used when the pod's securityContext names none. */
  user?: { uid: number; gid: number };
  /** The image's WORKDIR. */
  workingDir?: string;
  /** The image's content id (`sha256:…`), reported as the container's imageID. */
  id?: string;
}

export const HOST_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * The default table. Keys are matched against an image reference as: the full reference, the
 * repository without tag/digest, the repository's last path component, then keys containing `*` as
 * globs over the full reference. So `registry.k8s.io/etcd:3.6.16-0` → `etcd`,
 * `ghcr.io/etcd-recover/agent:0.1.0` → `*etcd-recover*`.
 */
export function defaultImages(p: { etcdBinDir: string; kubeBinDir: string; pluginBin: string }): Record<string, ImageSpec> {
  const shell: ImageSpec = { binDirs: HOST_PATH, cmd: ['sh'] };
  return {
    etcd: { binDirs: [p.etcdBinDir], cmd: ['etcd'] },
    'kube-apiserver': { binDirs: [p.kubeBinDir], entrypoint: ['kube-apiserver'] },
    'kube-controller-manager': { binDirs: [p.kubeBinDir], entrypoint: ['kube-controller-manager'] },
    'kube-scheduler': { binDirs: [p.kubeBinDir], entrypoint: ['kube-scheduler'] },
    '*etcd-recover*': { binDirs: [dirname(p.pluginBin), p.etcdBinDir], entrypoint: ['kubectl-etcd_recover'] },
    busybox: shell,
    alpine: shell,
    debian: { ...shell, cmd: ['bash'] },
    ubuntu: { ...shell, cmd: ['bash'] },
    bash: { ...shell, cmd: ['bash'] },
  };
}

export function parseImage(ref: string): { repo: string; last: string } {
  let r = ref;
  const at = r.indexOf('@');
  if (at >= 0) r = r.slice(0, at);
  const slash = r.lastIndexOf('/');
  const colon = r.lastIndexOf(':');
  if (colon > slash) r = r.slice(0, colon);
  return { repo: r, last: r.slice(r.lastIndexOf('/') + 1) };
}

function glob(pattern: string, s: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map((x) => x.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return re.test(s);
}

export function imageSpecFor(table: Record<string, ImageSpec>, ref: string): ImageSpec | undefined {
  const { repo, last } = parseImage(ref);
  if (table[ref]) return table[ref];
  if (table[repo]) return table[repo];
  if (table[last]) return table[last];
  for (const [k, v] of Object.entries(table)) if (k.includes('*') && glob(k, ref)) return v;
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    const st = statSync(p);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * command[0] → a host path: by basename in the image's bin dirs, then on the host PATH; an absolute
 * path that exists is kept; anything else is returned unchanged (it may live in a volume that only
 * exists inside the container's mount namespace).
 */
export function resolveCommand(image: ImageSpec, cmd: string): string {
  const name = basename(cmd);
  for (const d of [...image.binDirs, ...HOST_PATH]) {
    const p = join(d, name);
    if (isExecutable(p)) return p;
  }
  if (isAbsolute(cmd) && existsSync(cmd)) return cmd;
  return cmd;
}
