import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize, relative, isAbsolute, sep } from 'node:path';
import { HOST_PATH, type ImageSpec } from './images.js';
import { rootfsScript, type RootfsMount } from './rootfs.js';
import { isNotFound } from './rest.js';
import { shellQuote as q } from './util.js';
import type { KubeletContext } from './container-runner.js';
import { expand, fieldValue, resourceValue } from './container-env.js';

/** What a pod's inputs are made for (the PodWorker). */
export interface InputsHost {
  readonly k: KubeletContext;
  readonly pod: any;
  readonly uid: string;
  readonly podDir: string;
  readonly podIP: string;
  readonly hostsFile: string;
  readonly hostname: string;
  readonly hostNetwork: boolean;
}

interface VolumeMountSource { path: string; readOnly: boolean }

/**
 * What a pod's containers are given, made as the kubelet makes it from the API objects the pod names:
 * the environment (values, ConfigMap and Secret keys, the downward API), the volumes (emptyDir,
 * hostPath, PVCs, ConfigMaps, Secrets, projected service-account tokens) and the mount script that
 * puts them where each container mounts them.
 */
export class PodInputs {
  private volumes = new Map<string, VolumeMountSource>();

  constructor(private readonly p: InputsHost) {}

  async getObject(kind: 'configmaps' | 'secrets', name: string, optional: boolean): Promise<any | undefined> {
    try {
      return await this.p.k.rest.get(`/api/v1/namespaces/${this.p.pod.metadata.namespace}/${kind}/${name}`);
    } catch (e) {
      // 404, or 403 while the Node authorizer's graph has not caught up with the new pod yet.
      if (optional && isNotFound(e)) return undefined;
      throw e;
    }
  }

  private static objectData(kind: 'configmaps' | 'secrets', o: any): Record<string, Buffer> {
    const out: Record<string, Buffer> = {};
    if (kind === 'secrets') for (const [k, v] of Object.entries(o.data ?? {})) out[k] = Buffer.from(v as string, 'base64');
    else {
      for (const [k, v] of Object.entries(o.data ?? {})) out[k] = Buffer.from(v as string, 'utf8');
      for (const [k, v] of Object.entries(o.binaryData ?? {})) out[k] = Buffer.from(v as string, 'base64');
    }
    return out;
  }

  async buildEnv(c: any, image: ImageSpec): Promise<Record<string, string>> {
    const port = String(this.p.k.apiPort);
    const env: Record<string, string> = {
      PATH: [...new Set([...image.binDirs, ...HOST_PATH])].join(':'),
      HOSTNAME: this.p.hostname,
      // Processes share the host filesystem: give each pod its own HOME instead of the host's.
      HOME: join(this.p.podDir, 'home'),
      KUBERNETES_SERVICE_HOST: this.p.k.hostIP,
      KUBERNETES_SERVICE_PORT: port,
      KUBERNETES_SERVICE_PORT_HTTPS: port,
      KUBERNETES_PORT: `tcp://${this.p.k.hostIP}:${port}`,
      ...(image.env ?? {}),
      // A real image sees only its own filesystem: HOME as a runtime sets it for a user without a passwd entry.
      ...(image.rootfs ? { HOME: '/' } : {}),
    };
    for (const src of c.envFrom ?? []) {
      const kind = src.configMapRef ? 'configmaps' : 'secrets';
      const ref = src.configMapRef ?? src.secretRef;
      const o = await this.getObject(kind, ref.name, !!ref.optional);
      if (!o) continue;
      for (const [k, v] of Object.entries(PodInputs.objectData(kind, o))) env[`${src.prefix ?? ''}${k}`] = v.toString('utf8');
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom) {
        const vf = e.valueFrom;
        if (vf.fieldRef) env[e.name] = fieldValue(this.p.pod, vf.fieldRef.fieldPath, this.p.podIP, this.p.k.hostIP);
        else if (vf.resourceFieldRef) env[e.name] = resourceValue(this.p.pod, vf.resourceFieldRef, c.name, this.p.k.allocatable);
        else if (vf.configMapKeyRef || vf.secretKeyRef) {
          const kind = vf.configMapKeyRef ? 'configmaps' : 'secrets';
          const ref = vf.configMapKeyRef ?? vf.secretKeyRef;
          const o = await this.getObject(kind, ref.name, !!ref.optional);
          const v = o ? PodInputs.objectData(kind, o)[ref.key] : undefined;
          if (v === undefined) {
            if (ref.optional) continue;
            throw new Error(`couldn't find key ${ref.key} in ${kind === 'configmaps' ? 'ConfigMap' : 'Secret'} ${this.p.pod.metadata.namespace}/${ref.name}`);
          }
          env[e.name] = v.toString('utf8');
        } else throw new Error(`unsupported env valueFrom in ${e.name}`);
      } else {
        env[e.name] = expand(e.value ?? '', env);
      }
    }
    return env;
  }

  // ---------------------------------------------------------------- volumes
  private async tokenFor(audience: string | undefined, expirationSeconds: number | undefined): Promise<string> {
    const sa = this.p.pod.spec.serviceAccountName || 'default';
    const tr = await this.p.k.rest.post(`/api/v1/namespaces/${this.p.pod.metadata.namespace}/serviceaccounts/${sa}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        ...(audience ? { audiences: [audience] } : {}),
        expirationSeconds: expirationSeconds ?? 3600,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: this.p.pod.metadata.name, uid: this.p.uid },
      },
    });
    return tr.status.token;
  }

  private static writeFile(dir: string, rel: string, data: Buffer | string, mode: number): void {
    const p = normalize(join(dir, rel));
    if (relative(dir, p).startsWith('..')) throw new Error(`volume item path ${rel} escapes the volume`);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, data);
    chmodSync(p, mode);
  }

  private async writeKeyed(dir: string, kind: 'configmaps' | 'secrets', src: any, defaultMode: number): Promise<void> {
    const name = kind === 'secrets' ? src.secretName ?? src.name : src.name;
    const o = await this.getObject(kind, name, !!src.optional);
    if (!o) return;
    const data = PodInputs.objectData(kind, o);
    if (src.items?.length) {
      for (const it of src.items) {
        if (!(it.key in data)) {
          if (src.optional) continue;
          throw new Error(`key ${it.key} not found in ${kind === 'secrets' ? 'Secret' : 'ConfigMap'} ${name}`);
        }
        PodInputs.writeFile(dir, it.path, data[it.key]!, it.mode ?? defaultMode);
      }
    } else {
      for (const [k, v] of Object.entries(data)) PodInputs.writeFile(dir, k, v, defaultMode);
    }
  }

  private writeDownward(dir: string, items: any[], defaultMode: number): void {
    for (const it of items ?? []) {
      const v = it.fieldRef
        ? fieldValue(this.p.pod, it.fieldRef.fieldPath, this.p.podIP, this.p.k.hostIP)
        : resourceValue(this.p.pod, it.resourceFieldRef, undefined, this.p.k.allocatable);
      PodInputs.writeFile(dir, it.path, v, it.mode ?? defaultMode);
    }
  }

  private async pvcPath(claimName: string): Promise<string> {
    const ns = this.p.pod.metadata.namespace;
    const pvc = await this.p.k.rest.get(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${claimName}`);
    // As the kubelet: a claim being deleted is not mounted (the pod waits; the claim stays held by it).
    if (pvc.metadata?.deletionTimestamp) throw new Error(`PVC ${ns}/${claimName} is being deleted`);
    if (pvc.status?.phase !== 'Bound' || !pvc.spec?.volumeName) throw new Error(`PVC ${ns}/${claimName} is not bound yet`);
    const pv = await this.p.k.rest.get(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
    const path: string | undefined = pv.spec?.hostPath?.path ?? pv.spec?.local?.path;
    if (!path) throw new Error(`PV ${pv.metadata.name} is neither hostPath nor local: the process kubelet cannot mount it`);
    mkdirSync(path, { recursive: true });
    // Directories of the controller-manager's hostPath provisioner go when the harness goes (even on process.exit).
    if (path.startsWith('/tmp/hostpath_pv/')) this.p.k.slot.recordPath('rm-rf', path);
    return path;
  }

  async prepareVolumes(): Promise<void> {
    const fsGroup: number | undefined = this.p.pod.spec.securityContext?.fsGroup;
    for (const v of this.p.pod.spec.volumes ?? []) {
      if (this.volumes.has(v.name)) continue;
      const dir = join(this.p.podDir, 'volumes', v.name);
      let src: VolumeMountSource = { path: dir, readOnly: false };
      if (v.emptyDir) {
        mkdirSync(dir, { recursive: true });
        chmodSync(dir, 0o777);
      } else if (v.configMap) {
        mkdirSync(dir, { recursive: true });
        await this.writeKeyed(dir, 'configmaps', v.configMap, v.configMap.defaultMode ?? 0o644);
        src.readOnly = true;
      } else if (v.secret) {
        mkdirSync(dir, { recursive: true });
        await this.writeKeyed(dir, 'secrets', v.secret, v.secret.defaultMode ?? 0o644);
        src.readOnly = true;
      } else if (v.downwardAPI) {
        mkdirSync(dir, { recursive: true });
        this.writeDownward(dir, v.downwardAPI.items, v.downwardAPI.defaultMode ?? 0o644);
        src.readOnly = true;
      } else if (v.projected) {
        mkdirSync(dir, { recursive: true });
        const mode = v.projected.defaultMode ?? 0o644;
        for (const s of v.projected.sources ?? []) {
          if (s.serviceAccountToken) {
            const t = await this.tokenFor(s.serviceAccountToken.audience, s.serviceAccountToken.expirationSeconds);
            PodInputs.writeFile(dir, s.serviceAccountToken.path, t, mode);
          } else if (s.configMap) await this.writeKeyed(dir, 'configmaps', s.configMap, mode);
          else if (s.secret) await this.writeKeyed(dir, 'secrets', s.secret, mode);
          else if (s.downwardAPI) this.writeDownward(dir, s.downwardAPI.items, mode);
          else throw new Error(`unsupported projected volume source in ${v.name}: ${Object.keys(s).join(',')}`);
        }
        src.readOnly = true;
      } else if (v.persistentVolumeClaim) {
        src = { path: await this.pvcPath(v.persistentVolumeClaim.claimName), readOnly: !!v.persistentVolumeClaim.readOnly };
      } else if (v.ephemeral) {
        src = { path: await this.pvcPath(`${this.p.pod.metadata.name}-${v.name}`), readOnly: false };
      } else if (v.hostPath) {
        const p: string = v.hostPath.path;
        const type = v.hostPath.type ?? '';
        if (type === 'DirectoryOrCreate') mkdirSync(p, { recursive: true });
        else if (type === 'FileOrCreate' && !existsSync(p)) { mkdirSync(dirname(p), { recursive: true }); writeFileSync(p, ''); }
        else if ((type === 'Directory' || type === 'File') && !existsSync(p)) throw new Error(`hostPath ${p} does not exist`);
        src = { path: p, readOnly: false };
      } else {
        throw new Error(`volume ${v.name}: unsupported volume type ${Object.keys(v).filter((k) => k !== 'name').join(',')}`);
      }
      if (fsGroup !== undefined && !v.hostPath) {
        try { chownRecursive(src.path, fsGroup); } catch { /* best effort */ }
      }
      this.volumes.set(v.name, src);
    }
  }

  /**
   * The shell run inside the container's fresh mount (and UTS) namespace before exec'ing the command:
   * bind mounts for volumeMounts (subPath, readOnly), the pod's /etc/hosts, hostname, workingDir, user.
   */
  mountScript(c: any, image: ImageSpec): string {
    const lines: string[] = ['set -e'];
    // The image's binaries at the paths the image would have them (scripts say /usr/local/bin/etcd):
    // a read-only overlay of the image's bin dirs over the host's, visible only in this mount namespace.
    const own = image.binDirs.filter((d) => !HOST_PATH.includes(d) && existsSync(d));
    if (own.length) {
      for (const target of image.overlayAt ?? ['/usr/local/bin', '/usr/bin']) {
        if (existsSync(target)) lines.push(`mount -t overlay overlay -o ${q(`lowerdir=${[...own, target].join(':')}`)} ${q(target)}`);
      }
    }
    const mounts = [...(c.volumeMounts ?? [])].sort((a: any, b: any) => a.mountPath.split('/').length - b.mountPath.split('/').length);
    const done: string[] = [];
    const under = (p: string) => done.some((m) => p === m || p.startsWith(m.endsWith(sep) ? m : m + sep));
    for (const m of mounts) {
      const vol = this.volumes.get(m.name);
      if (!vol) throw new Error(`volumeMount ${m.name}: no such volume`);
      let src = vol.path;
      if (m.subPath || m.subPathExpr) {
        const sub = m.subPathExpr ? expand(m.subPathExpr, {}) : m.subPath;
        src = normalize(join(vol.path, sub));
        if (relative(vol.path, src).startsWith('..') || isAbsolute(sub)) throw new Error(`subPath ${sub} escapes volume ${m.name}`);
        if (!existsSync(src)) mkdirSync(src, { recursive: true });
      }
      const target: string = normalize(m.mountPath);
      const isFile = existsSync(src) && !statIsDir(src);
      if (!under(target)) this.ensureHostTarget(target, isFile);
      lines.push(isFile ? `[ -e ${q(target)} ] || { mkdir -p ${q(dirname(target))}; : > ${q(target)}; }` : `mkdir -p ${q(target)}`);
      lines.push(`mount --bind ${q(src)} ${q(target)}`);
      if (m.readOnly || vol.readOnly) lines.push(`mount -o remount,bind,ro ${q(target)}`);
      done.push(target);
    }
    if (!this.p.hostNetwork && this.p.hostsFile && !done.includes('/etc/hosts')) {
      lines.push(`mount --bind ${q(this.p.hostsFile)} /etc/hosts`);
      lines.push(`hostname ${q(this.p.hostname)}`);
    }
    if (c.workingDir) {
      if (!under(c.workingDir)) this.ensureHostTarget(c.workingDir, false);
      lines.push(`mkdir -p ${q(c.workingDir)}`, `cd ${q(c.workingDir)}`);
    }
    const sc = { ...(this.p.pod.spec.securityContext ?? {}), ...(c.securityContext ?? {}) };
    if (sc.runAsUser !== undefined && sc.runAsUser !== 0) {
      const groups = [sc.fsGroup, ...(sc.supplementalGroups ?? [])].filter((g) => g !== undefined);
      lines.push(`exec setpriv --reuid=${Number(sc.runAsUser)} --regid=${Number(sc.runAsGroup ?? sc.runAsUser)} ${groups.length ? `--groups=${groups.join(',')}` : '--clear-groups'} -- "$@"`);
    } else {
      lines.push('exec "$@"');
    }
    return lines.join('\n');
  }

  /**
   * mountScript's counterpart for a real image (ImageSpec.rootfs): the container's root is a fresh
   * overlay of the image's rootfs (its writable layer lives in the pod's folder, new on every start),
   * the volumes are mounted inside it, and the command runs chrooted there (rootfs.ts).
   */
  rootfsMountScript(c: any, image: ImageSpec, container: string): string {
    const base = join(this.p.podDir, 'rootfs', container);
    rmSync(base, { recursive: true, force: true });
    for (const d of ['root', 'upper', 'work']) mkdirSync(join(base, d), { recursive: true });
    const mounts: RootfsMount[] = [];
    for (const m of c.volumeMounts ?? []) {
      const vol = this.volumes.get(m.name);
      if (!vol) throw new Error(`volumeMount ${m.name}: no such volume`);
      let src = vol.path;
      if (m.subPath) {
        src = normalize(join(vol.path, m.subPath));
        if (relative(vol.path, src).startsWith('..') || isAbsolute(m.subPath)) throw new Error(`subPath ${m.subPath} escapes volume ${m.name}`);
        if (!existsSync(src)) mkdirSync(src, { recursive: true });
      }
      mounts.push({ src, target: normalize(m.mountPath), isFile: existsSync(src) && !statIsDir(src), readOnly: !!(m.readOnly || vol.readOnly) });
    }
    mounts.sort((a, b) => a.target.split('/').length - b.target.split('/').length);
    const sc = { ...(this.p.pod.spec.securityContext ?? {}), ...(c.securityContext ?? {}) };
    const groups = [sc.fsGroup, ...(sc.supplementalGroups ?? [])].filter((g) => g !== undefined).map(Number);
    const user = sc.runAsUser !== undefined
      ? { uid: Number(sc.runAsUser), gid: Number(sc.runAsGroup ?? image.user?.gid ?? sc.runAsUser), groups }
      : image.user ? { ...image.user, gid: sc.runAsGroup !== undefined ? Number(sc.runAsGroup) : image.user.gid, groups } : undefined;
    return ['set -e', ...rootfsScript({
      image,
      root: join(base, 'root'),
      upper: join(base, 'upper'),
      work: join(base, 'work'),
      mounts,
      hostsFile: !this.p.hostNetwork ? this.p.hostsFile : undefined,
      hostname: !this.p.hostNetwork ? this.p.hostname : undefined,
      readOnlyRootFilesystem: !!sc.readOnlyRootFilesystem,
      user,
      workingDir: c.workingDir,
    })].join('\n');
  }

  /** Creates a missing mount point on the host (recorded for removal when the harness stops). */
  private ensureHostTarget(target: string, isFile: boolean): void {
    this.p.k.slot.recordPath('uses', target);
    if (existsSync(target)) return;
    const dir = isFile ? dirname(target) : target;
    const missing: string[] = [];
    for (let d = dir; d !== '/' && !existsSync(d); d = dirname(d)) missing.unshift(d);
    for (const d of missing) {
      try { mkdirSync(d); } catch { /* raced */ }
      this.p.k.slot.recordPath('rmdir-if-empty', d);
    }
    if (isFile) {
      try { writeFileSync(target, '', { flag: 'wx' }); } catch { /* raced */ }
      this.p.k.slot.recordPath('unlink-if-empty', target);
    }
  }

  // ---------------------------------------------------------------- status
}

function statIsDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function chownRecursive(p: string, gid: number): void {
  const st = statSync(p);
  chownSync(p, st.uid, gid);
  if (st.isDirectory()) {
    chmodSync(p, (st.mode & 0o7777) | 0o2070);
    for (const e of readdirSync(p)) chownRecursive(join(p, e), gid);
  } else {
    chmodSync(p, (st.mode & 0o7777) | 0o060);
  }
}
