import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { alive, procStartTime, run, runQuiet } from './util.js';

/**
 * Host networking for one harness instance ("slot" N in 1..250):
 *   bridge  erkbrN   10.88.N.1/24   the node's address (InternalIP, apiserver, kubelet port)
 *   pods    10.88.N.2-254, each in its own network namespace erkN-<octet> with a veth to the bridge
 *   services 10.89.N.0/24 (ClusterIPs; nothing routes them: the host gets an `unreachable` route so a
 *            connection attempt fails at once instead of leaving the machine)
 * Pods get no default route: they reach the /24 (other pods, the host's bridge address) and nothing else.
 * Slots are claimed with an atomic mkdir under /run/etcd-recover-kube; a slot whose owner died is
 * reaped (its recorded processes killed, netns and bridge deleted, recorded paths removed) by the next
 * harness that starts, so a SIGKILLed test run leaves nothing behind for long.
 */
const STATE = '/run/etcd-recover-kube';

export class Slot {
  readonly bridge: string;
  readonly prefix: string;
  readonly hostIP: string;
  readonly podCIDR: string;
  readonly serviceCIDR: string;
  readonly firstServiceIP: string;
  private readonly free: number[] = [];
  private readonly used = new Set<number>();
  private readonly recorded = new Set<string>();

  constructor(readonly index: number, readonly stateDir: string) {
    this.bridge = `erkbr${index}`;
    this.prefix = `10.88.${index}`;
    this.hostIP = `${this.prefix}.1`;
    this.podCIDR = `${this.prefix}.0/24`;
    this.serviceCIDR = `10.89.${index}.0/24`;
    this.firstServiceIP = `10.89.${index}.1`;
    for (let i = 2; i < 255; i++) this.free.push(i);
  }

  /** Records a process (group) this harness started, so a reaper can kill it if we die uncleanly. */
  recordPid(pid: number): void {
    appendFileSync(join(this.stateDir, 'pids'), `${pid} ${procStartTime(pid) ?? ''}\n`);
  }

  /**
   * Records a path to remove when the slot is released or reaped; `uses` marks a host mount point this
   * slot's containers bind-mount onto (another harness must not remove it while we run).
   */
  recordPath(kind: 'rm-rf' | 'rmdir-if-empty' | 'unlink-if-empty' | 'uses', path: string): void {
    if (this.recorded.has(`${kind} ${path}`)) return;
    this.recorded.add(`${kind} ${path}`);
    appendFileSync(join(this.stateDir, 'paths'), `${kind} ${path}\n`);
  }

  allocateIP(): string {
    const n = this.free.shift();
    if (n === undefined) throw new Error(`pod network ${this.podCIDR} is full`);
    this.used.add(n);
    return `${this.prefix}.${n}`;
  }

  releaseIP(ip: string): void {
    const n = Number(ip.split('.')[3]);
    if (this.used.delete(n)) this.free.push(n); // reuse late: FIFO
  }

  netnsName(ip: string): string {
    return `erk${this.index}-${ip.split('.')[3]}`;
  }

  /** Creates the pod's network namespace with eth0 = ip/24 on the bridge, lo up. */
  async createPodNetns(ip: string): Promise<string> {
    const ns = this.netnsName(ip);
    const veth = `erv${this.index}-${ip.split('.')[3]}`;
    runQuiet('ip', ['netns', 'del', ns]); // leftovers of an earlier pod with this address
    await run('ip', ['netns', 'add', ns]);
    // The kernel destroys a deleted netns (and so the host end of its veth) asynchronously: an address
    // reused soon after can meet its old `erv…` still there ("File exists"). Delete it and retry.
    for (let attempt = 1; ; attempt++) {
      runQuiet('ip', ['link', 'del', veth]);
      try {
        await run('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
        break;
      } catch (e) {
        if (attempt >= 10 || !/File exists/.test((e as Error).message)) throw e;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
    await run('ip', ['link', 'set', veth, 'master', this.bridge, 'up']);
    await run('ip', ['-n', ns, '-batch', '-'], {
      input: [`addr add ${ip}/24 dev eth0`, 'link set eth0 up', 'link set lo up', `route add unreachable ${this.serviceCIDR}`].join('\n') + '\n',
    });
    return ns;
  }

  deletePodNetns(ns: string): void {
    killNetnsPids(ns);
    runQuiet('ip', ['netns', 'del', ns]);
  }

  /** Tears everything down (normal path). Idempotent. */
  release(): void {
    reapSlotDir(this.stateDir, this.index);
  }
}

function killNetnsPids(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(/\s+/).filter(Boolean);
    for (const p of pids) try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ }
  } catch { /* no such netns */ }
}

function listNetns(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter(Boolean);
  } catch {
    return [];
  }
}

/** Kills recorded processes, deletes netns/bridge/route, removes recorded paths, removes the state dir. */
function reapSlotDir(dir: string, index: number): void {
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean) : []);
  for (const line of read('pids')) {
    const [pid, st] = line.split(' ');
    if (pid && alive(Number(pid), st || undefined)) {
      try { process.kill(-Number(pid), 'SIGKILL'); } catch { /* not a group leader */ }
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
    }
  }
  for (const ns of listNetns()) {
    if (ns.startsWith(`erk${index}-`)) {
      killNetnsPids(ns);
      runQuiet('ip', ['netns', 'del', ns]);
    }
  }
  runQuiet('ip', ['link', 'del', `erkbr${index}`]);
  runQuiet('ip', ['route', 'del', 'unreachable', `10.89.${index}.0/24`]);
  const usedElsewhere = pathsUsedByOtherSlots(dir);
  const records = read('paths').map((line) => ({ kind: line.slice(0, line.indexOf(' ')), path: line.slice(line.indexOf(' ') + 1) }));
  for (const r of records) if (r.kind === 'rm-rf') rmSync(r.path, { recursive: true, force: true });
  // Mount points this harness created on the host: deepest first. Removing a directory that is a mount
  // point in another mount namespace detaches that mount, so a path another harness uses is handed over
  // to it (with its ancestors, which are then not empty) instead of removed.
  const handOver: string[] = [];
  const removable = records.filter((r) => r.kind === 'rmdir-if-empty' || r.kind === 'unlink-if-empty');
  removable.sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  for (const r of removable) {
    const user = usedElsewhere.get(r.path);
    if (user) { handOver.push(`${r.kind} ${r.path}`); continue; }
    try {
      if (r.kind === 'rmdir-if-empty') rmdirSync(r.path);
      else if (statSync(r.path).size === 0) unlinkSync(r.path);
    } catch {
      if (existsSync(r.path) && usedElsewhere.size) handOver.push(`${r.kind} ${r.path}`);
    }
  }
  if (handOver.length) {
    const heir = [...usedElsewhere.values()][0]!;
    try { appendFileSync(join(heir, 'paths'), handOver.reverse().join('\n') + '\n'); } catch { /* heir gone: leave them */ }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Host mount points used by containers of other harnesses → the slot dir using them. */
function pathsUsedByOtherSlots(ownDir: string): Map<string, string> {
  const used = new Map<string, string>();
  const slots = join(STATE, 'slots');
  let names: string[] = [];
  try { names = readdirSync(slots); } catch { return used; }
  for (const name of names) {
    const d = join(slots, name);
    if (d === ownDir || !/^\d+$/.test(name)) continue;
    try {
      for (const line of readFileSync(join(d, 'paths'), 'utf8').split('\n')) {
        if (line.startsWith('uses ')) used.set(line.slice(5), d);
      }
    } catch { /* no paths */ }
  }
  return used;
}

/** Reaps slots whose owner process is gone. */
export function reapStaleSlots(): void {
  const slots = join(STATE, 'slots');
  if (!existsSync(slots)) return;
  for (const name of readdirSync(slots)) {
    if (!/^\d+$/.test(name)) continue;
    const dir = join(slots, name);
    let owner = '';
    try { owner = readFileSync(join(dir, 'owner'), 'utf8').trim(); } catch { /* being created, or broken */ }
    const [pid, st] = owner.split(' ');
    if (pid && alive(Number(pid), st)) continue;
    if (!pid) {
      // No owner file: only reap if it has been like that for a while (not a slot being claimed now).
      try { if (Date.now() - statSync(dir).mtimeMs < 60_000) continue; } catch { continue; }
    }
    const grave = `${dir}.reap.${process.pid}`;
    try { renameSync(dir, grave); } catch { continue; } // someone else is reaping it
    reapSlotDir(grave, Number(name));
  }
}

/** Claims a free slot and creates its bridge. */
export async function acquireSlot(): Promise<Slot> {
  reapStaleSlots();
  const slots = join(STATE, 'slots');
  mkdirSync(slots, { recursive: true });
  const routes = execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }) + execFileSync('ip', ['-4', 'addr'], { encoding: 'utf8' });
  const start = 1 + (process.pid % 250);
  for (let k = 0; k < 250; k++) {
    const index = 1 + ((start - 1 + k) % 250);
    if (routes.includes(`10.88.${index}.`) || routes.includes(`10.89.${index}.`)) continue;
    const dir = join(slots, String(index));
    try { mkdirSync(dir); } catch { continue; }
    writeFileSync(join(dir, 'owner'), `${process.pid} ${procStartTime(process.pid)}\n`);
    const slot = new Slot(index, dir);
    try {
      await run('ip', ['link', 'add', slot.bridge, 'type', 'bridge']);
      await run('ip', ['addr', 'add', `${slot.hostIP}/24`, 'dev', slot.bridge]);
      await run('ip', ['link', 'set', slot.bridge, 'up']);
      await run('ip', ['route', 'add', 'unreachable', slot.serviceCIDR]);
    } catch (e) {
      slot.release();
      throw e;
    }
    return slot;
  }
  throw new Error('no free harness network slot (10.88.1-250.0/24 all taken)');
}
