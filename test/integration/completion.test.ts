import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import type { Sandbox, SnapshotRecord } from '@etcd-recover/core';
import { kubectl, repoRoot } from '../support/binaries.js';
import { json, pluginBin, runCli } from '../support/cli.js';
import { startSandbox, stopSandbox, tempDir } from '../support/sandbox.js';

// The plugin the CLI tests run (the single executable, or bin/ with ETCD_RECOVER_TEST_CLI=node) and its completer beside it.
const binDir = dirname(pluginBin);
const completer = join(binDir, 'kubectl_complete-etcd_recover');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a program the way a shell's completion does (no terminal), timing the whole process. */
function run(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(bin, args, { env: { ...process.env, ETCD_RECOVER_SANDBOX: '/nonexistent-sandbox', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, ms: performance.now() - start });
    });
  });
}

const { version } = JSON.parse(readFileSync(join(repoRoot, 'packages', 'kubectl-plugin', 'package.json'), 'utf8')) as { version: string };
/** oclif's --version: package, version, platform, Node. */
const versionLine = new RegExp(`^@etcd-recover/kubectl-plugin/${version.replace(/\./g, '\\.')} linux-x64 node-v\\d+\\.\\d+\\.\\d+\\n$`);

const completion = (words: string[], env?: NodeJS.ProcessEnv) => run(completer, words, env);

describe('shell completion: kubectl_complete-etcd_recover and kubectl __complete (real etcd, MinIO, kubectl)', function () {
  this.timeout(600_000);

  describe('nothing reachable', () => {
    // Accepts connections and never answers: a bucket, etcd or API server that hangs.
    let hang: Server;
    const sockets = new Set<Socket>();
    let url = '';
    const dir = tempDir();
    before(async () => {
      hang = createServer((s) => sockets.add(s));
      await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`;
    });
    after(() => {
      for (const s of sockets) s.destroy();
      hang.close();
      dir.remove();
    });

    /** The static answer, exit 0, nothing on stderr (the shell would show it), in under 3 s. */
    async function quiet(words: string[], stdout: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
      const r = await completion(words, env);
      assert.deepEqual({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 0, stdout, stderr: '' }, words.join(' '));
      assert.ok(r.ms < 3_000, `${words.join(' ')}: ${Math.round(r.ms)} ms`);
      return r;
    }

    it('no target at all: commands, flags and options still complete; names are left out', async () => {
      const root = await quiet([''], [
        'backup\tCreate, list, verify and prune etcd snapshots in the backup bucket.',
        'member\tReplace a failed member while quorum holds.',
        'quorum\tRestore a cluster that lost quorum.',
        'sandbox\tA local etcd cluster and S3 bucket as processes on loopback.',
        'status\tHealth of every member and of the backups.',
        ':4',
        '',
      ].join('\n'));
      assert.ok(root.ms < 1_000, `static completion took ${Math.round(root.ms)} ms`);
      await quiet(['status', '--output', ''], 'table\nwide\njson\nyaml\n:4\n');
      await quiet(['backup', 'verify', ''], ':36\n');
      await quiet(['member', 'replace', ''], ':4\n');
      await quiet(['-h', 'backup', '--help', ''], ':4\n', {});
    });

    it('a bucket, etcd members and an API server that never answer: the static answer within the budget', async () => {
      const s3 = { AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y' };
      const bucket = await quiet(['backup', 'verify', '--bucket', 'backups', '--s3-endpoint', url, ''], ':36\n', s3);
      assert.ok(bucket.ms > 1_000, `gave up after ${Math.round(bucket.ms)} ms: it should have waited for the bucket`);
      await quiet(['member', 'replace', '--endpoints', url, 'etcd-'], ':4\n');
      const kubeconfig = join(dir.path, 'kubeconfig');
      writeFileSync(kubeconfig, JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: url.replace('http:', 'https:'), 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'u', user: { token: 't' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u', namespace: 'hcp' } }],
        'current-context': 'x',
      }));
      await quiet(['quorum', '--kubeconfig', kubeconfig, '-n', 'hcp', '--snapshot', ''], ':36\n');
      await quiet(['member', 'replace', '--kubeconfig', join(dir.path, 'missing'), '-n', 'hcp', ''], ':4\n');
    });
  });

  describe('against a real sandbox, directly and through kubectl', () => {
    let sb: Sandbox;
    let env: NodeJS.ProcessEnv;
    before(async () => {
      sb = await startSandbox({ members: 3, cluster: 'completion-it' });
      env = { ETCD_RECOVER_SANDBOX: sb.dir };
    });
    after(async () => stopSandbox(sb));

    let backup: SnapshotRecord;

    it('backup names appear once a backup exists (newest first), also as --snapshot=NAME', async () => {
      assert.equal((await completion(['backup', 'verify', ''], env)).stdout, ':36\n');
      const created = await runCli(['backup', 'create', '-q', '-o', 'json'], { env });
      assert.equal(created.code, 0, created.stderr);
      backup = json<SnapshotRecord>(created);
      const r = await completion(['backup', 'verify', ''], env);
      assert.equal(r.code, 0);
      assert.equal(r.stderr, '');
      assert.equal(r.stdout, `${backup.name}\t${backup.createdAt}, revision ${backup.revision}, verified\n:36\n`);
      assert.equal((await completion(['quorum', `--snapshot=${backup.name.slice(0, 5)}`], env)).stdout, `--snapshot=${backup.name}\t${backup.createdAt}, revision ${backup.revision}, verified\n:36\n`);
      assert.equal((await completion(['backup', 'export', 'nomatch'], env)).stdout, ':36\n');
    });

    it('member names for member replace, client URLs for backup create --member', async () => {
      const members = sb.state.members;
      assert.equal((await completion(['member', 'replace', ''], env)).stdout, [...members.map((m) => `${m.name}\t${m.clientURL}`), ':4', ''].join('\n'));
      assert.equal((await completion(['backup', 'create', '--member', ''], env)).stdout, [...members.map((m) => `${m.clientURL}\t${m.name}`), ':4', ''].join('\n'));
      // By --endpoints alone: the member list comes from etcd itself.
      const direct = await completion(['member', 'replace', '--endpoints', members[0]!.clientURL, '--sandbox-dir', '/nonexistent', ''], env);
      assert.deepEqual(direct.stdout.split('\n').map((l) => l.split('\t')[0]).sort(), ['', ':4', ...members.map((m) => m.name)].sort());
    });

    it('kubectl runs the plugin (`kubectl etcd-recover status`) and its completion (`kubectl __complete etcd-recover …`) from PATH', async () => {
      const path = `${dirname(kubectl())}:${binDir}:${process.env['PATH']}`;
      const k = (args: string[]) => run('kubectl', args, { ...env, PATH: path, KUBECONFIG: '/nonexistent-kubeconfig' });
      const st = await k(['etcd-recover', 'status', '-o', 'json']);
      assert.equal(st.code, 0, st.stderr);
      assert.equal(json(st).healthy, 3);
      assert.match((await k(['etcd-recover', '--version'])).stdout, versionLine);

      const plugins = await k(['__complete', 'etcd-r']);
      assert.match(plugins.stdout, /^etcd-recover\t/m);
      const top = await k(['__complete', 'etcd-recover', '']);
      assert.equal(top.code, 0, top.stderr);
      assert.deepEqual(top.stdout.split('\n').map((l) => l.split('\t')[0]), ['backup', 'member', 'quorum', 'sandbox', 'status', ':4', '']);
      assert.match(top.stdout, /^backup\tCreate, list, verify and prune etcd snapshots in the backup bucket\.$/m);
      const names = await k(['__complete', 'etcd-recover', 'backup', 'verify', '']);
      assert.equal(names.stdout, `${backup.name}\t${backup.createdAt}, revision ${backup.revision}, verified\n:36\n`);
      const flags = await k(['__complete', 'etcd-recover', 'status', '--out']);
      assert.equal(flags.stdout, '--output\tOutput format.\n:4\n');
    });
  });

  it('--version prints the version from package.json', async () => {
    const r = await run(join(binDir, 'kubectl-etcd_recover'), ['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, versionLine);
  });
});
