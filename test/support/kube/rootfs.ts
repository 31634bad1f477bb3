import { existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join, normalize, posix } from 'node:path';
import type { ImageSpec } from './images.js';

/**
 * Containers from a real image's root filesystem (an unpacked OCI image, e.g. the agent image that
 * scripts/build-image.sh builds): the process kubelet runs the entrypoint chrooted into a fresh
 * overlay of that rootfs, in the pod's network namespace and its own mount and UTS namespaces, with
 * the pod's volumes mounted at their paths inside it: what a container runtime does, minus cgroups
 * and seccomp. Host binaries are not visible to it.
 */

/** The image's config as `podman image inspect --format '{{json .Config}}'` prints it. */
export interface ImageConfig {
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  User?: string;
  WorkingDir?: string;
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** An ImageSpec for an unpacked image: its rootfs, and ENTRYPOINT/CMD/ENV/USER from its config. */
export function rootfsImage(rootfs: string, config: ImageConfig): ImageSpec {
  if (!existsSync(join(rootfs, 'bin')) && !existsSync(join(rootfs, 'usr'))) throw new Error(`${rootfs} is not an unpacked image root filesystem`);
  const env: Record<string, string> = { PATH: DEFAULT_PATH };
  for (const e of config.Env ?? []) {
    const i = e.indexOf('=');
    if (i > 0) env[e.slice(0, i)] = e.slice(i + 1);
  }
  const [user, group] = (config.User ?? '').split(':');
  const numeric = (s: string | undefined) => (s && /^\d+$/.test(s) ? Number(s) : undefined);
  if (config.User && numeric(user) === undefined) throw new Error(`image user ${config.User}: only numeric users are supported`);
  return {
    binDirs: [],
    rootfs,
    entrypoint: config.Entrypoint ?? undefined,
    cmd: config.Cmd ?? undefined,
    env,
    user: numeric(user) !== undefined ? { uid: numeric(user)!, gid: numeric(group) ?? numeric(user)! } : undefined,
    workingDir: config.WorkingDir || undefined,
  };
}

/** The agent image scripts/build-image.sh built, from the AGENT_* lines it prints, as an ImageSpec. */
export function agentImageFromVars(vars: Record<string, string>): ImageSpec & { image: string; id: string; bytes: number } {
  const config = JSON.parse(readFileSync(vars['AGENT_IMAGE_CONFIG']!, 'utf8')) as ImageConfig;
  return { ...rootfsImage(vars['AGENT_ROOTFS']!, config), image: vars['AGENT_IMAGE']!, id: vars['AGENT_IMAGE_ID']!, bytes: Number(vars['AGENT_IMAGE_BYTES']) };
}

/**
 * A path inside the image, its symlinks followed within the image's root (never the host's): Debian's
 * /var/run -> /run must put the service-account token under the container's /run, not the host's.
 */
export function resolveInRoot(rootfs: string, path: string): string {
  let out = '/';
  const todo = normalize(path).split('/').filter(Boolean);
  for (let hops = 0; todo.length; ) {
    const part = todo.shift()!;
    if (part === '..') { out = posix.dirname(out); continue; }
    const next = posix.join(out, part);
    let link: string | undefined;
    try { if (lstatSync(join(rootfs, next)).isSymbolicLink()) link = readlinkSync(join(rootfs, next)); } catch { /* not in the image: created as a folder */ }
    if (link === undefined) { out = next; continue; }
    if (++hops > 40) throw new Error(`${path}: too many symlinks in the image`);
    todo.unshift(...link.split('/').filter(Boolean));
    if (link.startsWith('/')) out = '/';
  }
  return out;
}

export interface RootfsMount { src: string; target: string; isFile: boolean; readOnly: boolean }

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The shell lines, run on the host inside the container's new mount namespace, that build its root
 * (`root`: an empty folder; `upper`/`work`: empty folders on the same filesystem, the container's
 * writable layer) and exec the command in it.
 */
export function rootfsScript(p: {
  image: ImageSpec;
  root: string;
  upper: string;
  work: string;
  mounts: RootfsMount[];
  hostsFile?: string;
  hostname?: string;
  readOnlyRootFilesystem: boolean;
  user?: { uid: number; gid: number; groups: number[] };
  workingDir?: string;
}): string[] {
  const R = p.root;
  const at = (path: string) => q(join(R, resolveInRoot(p.image.rootfs!, path)));
  const lines = [
    `mount -t overlay overlay -o ${q(`lowerdir=${p.image.rootfs},upperdir=${p.upper},workdir=${p.work}`)} ${q(R)}`,
    `mkdir -p ${at('/proc')} ${at('/dev')} ${at('/sys')} ${at('/tmp')}`,
    `mount -t proc proc ${at('/proc')}`,
    `mount --rbind /dev ${at('/dev')}`,
    `mount --rbind -o ro /sys ${at('/sys')} 2>/dev/null || mount --rbind /sys ${at('/sys')}`,
  ];
  const etc = [
    ...(p.hostsFile ? [{ src: p.hostsFile, target: '/etc/hosts', isFile: true, readOnly: false }] : []),
    ...(existsSync('/etc/resolv.conf') ? [{ src: '/etc/resolv.conf', target: '/etc/resolv.conf', isFile: true, readOnly: true }] : []),
  ].filter((e) => !p.mounts.some((m) => normalize(m.target) === e.target));
  for (const m of [...p.mounts, ...etc]) {
    const t = at(m.target);
    lines.push(m.isFile ? `[ -e ${t} ] || { mkdir -p "$(dirname ${t})"; : > ${t}; }` : `mkdir -p ${t}`);
    lines.push(`mount --bind ${q(m.src)} ${t}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro ${t}`);
  }
  if (p.hostname) lines.push(`hostname ${q(p.hostname)}`);
  // Mount points exist now; then the root itself becomes read-only (its submounts keep their modes).
  if (p.readOnlyRootFilesystem) lines.push(`mount -o remount,ro ${q(R)}`);
  const user = p.user ?? (p.image.user ? { ...p.image.user, groups: [] } : undefined);
  const spec = user && user.uid !== 0 ? `--userspec=${user.uid}:${user.gid} --groups=${[user.gid, ...user.groups].join(',')} ` : '';
  const wd = p.workingDir ?? p.image.workingDir;
  lines.push(wd ? `exec chroot ${spec}${q(R)} /bin/sh -c 'cd "$0" && exec "$@"' ${q(wd)} "$@"` : `exec chroot ${spec}${q(R)} "$@"`);
  return lines;
}
