import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Etcd3Gateway, EtcdRecoverError, Sandbox as SandboxClass, type Sandbox, type SnapshotRecord } from '@etcd-recover/core';
import { binaries } from '../support/binaries.js';
import { json, runCli, type CliResult } from '../support/cli.js';
import { Pki } from '../support/kube/pki.js';
import { adoptSandbox, destroyMembers, sandboxClient, stopSandbox, tempDir } from '../support/sandbox.js';

/** etcd's command line, as the process runs it. */
function cmdline(pid: number | undefined): string[] {
  assert.ok(pid, 'member has a pid');
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

/** The value after a flag on a command line. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
}

/** The TLS flags a member runs with: its own certificates, the sandbox CA, and certificate auth on both ports. */
function assertTlsArgs(sb: Sandbox, name: string): void {
  const m = sb.member(name);
  const args = cmdline(m.pid);
  assert.equal(flag(args, '--cert-file'), m.tls!.certFile, `${name} --cert-file`);
  assert.equal(flag(args, '--peer-cert-file'), m.tls!.peerCertFile, `${name} --peer-cert-file`);
  assert.equal(flag(args, '--trusted-ca-file'), sb.state.tls!.caFile);
  assert.equal(flag(args, '--peer-trusted-ca-file'), sb.state.tls!.caFile);
  assert.ok(args.includes('--client-cert-auth') && args.includes('--peer-client-cert-auth'), `${name} requires client and peer certificates`);
  assert.match(flag(args, '--listen-client-urls')!, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.match(flag(args, '--listen-peer-urls')!, /^https:\/\/127\.0\.0\.1:\d+$/);
}

/** What a TLS connection to host:port WITHOUT a client certificate ends with (the server's alert). */
function connectWithoutCert(url: string, ca: Buffer): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = tlsConnect({ host: u.hostname, port: Number(u.port), ca, servername: 'localhost' }, () => s.write('GET /version HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('data', () => resolve('answered'));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    setTimeout(() => resolve('no answer'), 5_000).unref();
  });
}

/** Every member holds `n` keys under the prefix, member-locally, over TLS. */
async function keysOnEveryMember(sb: Sandbox, prefix: string): Promise<number[]> {
  return Promise.all(
    sb.state.members.map(async (m) => {
      const c = sandboxClient(sb, [m.clientURL]);
      try {
        return await c.getAll().prefix(prefix).serializable(true).count();
      } finally {
        c.close();
      }
    }),
  );
}

/** The `error:` lines of a failed command's stderr. */
function errorLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l) => l.startsWith('error:'));
}

describe('TLS sandbox: https client and peer URLs with certificate auth, every recovery path, clear TLS errors', function () {
  this.timeout(600_000);
  const tmp = tempDir('etcd-recover-tls-');
  const dir = join(tmp.path, 'sandbox');
  let sb: Sandbox;
  let other: Pki;
  const reload = () => (sb = SandboxClass.load(dir)!);
  const cli = (...args: string[]) => runCli([...args, '--sandbox-dir', dir]);

  before(async () => {
    const b = binaries();
    process.env['ETCD_BIN_DIR'] = b.etcdBinDir;
    process.env['MINIO_BIN'] = b.minio;
    // Another CA, with a client certificate of its own: what a wrong --cacert or --cert looks like.
    other = await Pki.create(join(tmp.path, 'other-pki'), 'another-ca');
    await other.issue('client', { cn: 'stranger', usage: 'client' });
  });
  after(async () => {
    const down = await cli('sandbox', 'down', '--purge');
    if (down.code !== 0 && SandboxClass.load(dir)) await stopSandbox(reload());
    tmp.remove();
  });

  it('sandbox up --tls: https members requiring client and peer certificates, TLS material 0600 under the folder, recorded in sandbox.json', async () => {
    const r = await cli('sandbox', 'up', '--tls', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    adoptSandbox(reload());
    const state = json(r);
    assert.equal(state.members.length, 3);
    for (const m of state.members) {
      assert.match(m.clientURL, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.match(m.peerURL, /^https:\/\/127\.0\.0\.1:\d+$/);
      for (const k of [m.tls.keyFile, m.tls.peerKeyFile]) assert.equal(statSync(k).mode & 0o777, 0o600, `${k} is 0600`);
      for (const f of [m.tls.certFile, m.tls.peerCertFile]) assert.ok(f.startsWith(join(dir, 'tls')), `${f} under the sandbox folder`);
      assertTlsArgs(sb, m.name);
    }
    assert.equal(state.tls.caFile, join(dir, 'tls', 'ca.crt'));
    assert.equal(statSync(state.tls.caKeyFile).mode & 0o777, 0o600);
    assert.equal(statSync(join(state.tls.clientDir, 'tls.key')).mode & 0o777, 0o600);
    assert.ok(existsSync(join(state.tls.clientDir, 'ca.crt')) && existsSync(join(state.tls.clientDir, 'tls.crt')));
    assert.match(r.stderr, /starting etcd members etcd-0, etcd-1, etcd-2/);
    // The members really refuse a client, and a peer, that presents no certificate of the CA.
    const ca = readFileSync(state.tls.caFile);
    assert.equal(await connectWithoutCert(state.members[0].clientURL, ca), 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
    assert.equal(await connectWithoutCert(state.members[1].peerURL, ca), 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
  });

  let backup: SnapshotRecord;

  it('status, backup create and backup verify present the sandbox client certificate by themselves', async () => {
    const c = sandboxClient(sb);
    try {
      for (let i = 0; i < 2_000; i += 100) {
        await c.if('__none__', 'Version', '==', 0).then(...Array.from({ length: 100 }, (_, j) => c.put(`k/${String(i + j).padStart(7, '0')}`).value('v'.repeat(64)))).commit();
      }
    } finally {
      c.close();
    }
    // No backup yet: the RPO finding (exit 20) is not what this test is about.
    const status = await cli('status', '-o', 'json', '--no-fail');
    assert.equal(status.code, 0, status.stderr);
    const s = json(status);
    assert.equal(s.quorum, true);
    assert.equal(s.healthy, 3);
    assert.ok(s.members.every((m: { endpoint: string; error?: string }) => m.endpoint.startsWith('https://') && !m.error));

    const created = await cli('backup', 'create', '-o', 'json');
    assert.equal(created.code, 0, created.stderr);
    backup = json<SnapshotRecord>(created);
    assert.match(backup.sourceMember.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(backup.verification?.ok, true);
    assert.equal(backup.userKeys, 2_000);
    assert.match(created.stderr, /snapshotting https:\/\/127\.0\.0\.1:\d+ \(caught-up follower/);

    const verified = await cli('backup', 'verify', backup.name, '-o', 'json');
    assert.equal(verified.code, 0, verified.stderr);
    const v = json(verified);
    assert.equal(v.ok, true);
    assert.equal(v.results[0].revision, backup.revision);
    assert.equal(v.results[0].sha256, backup.sha256);
  });

  it('member replace rebuilds a lost member over TLS; it comes back with its own certificates and every key', async () => {
    await destroyMembers(reload(), ['etcd-2']);
    const r = await cli('member', 'replace', 'etcd-2', '--yes', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const report = json(r);
    assert.equal(report.status, 'completed');
    assert.match(r.stderr, /added etcd-2 as learner [0-9a-f]+/);
    assert.match(r.stderr, /promoted etcd-2 to voting member/);
    reload();
    assertTlsArgs(sb, 'etcd-2');
    const deadline = Date.now() + 20_000;
    let counts = await keysOnEveryMember(sb, 'k/');
    while (counts.some((n) => n !== 2_000) && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      counts = await keysOnEveryMember(sb, 'k/');
    }
    assert.deepEqual(counts, [2_000, 2_000, 2_000]);
  });

  it('quorum restores over TLS after two members lose their data: every key written before the backup is back, members restarted with TLS', async () => {
    const floor = (await cli('status', '-o', 'json').then(json)).members.reduce((m: number, x: { revision?: number }) => Math.max(m, x.revision ?? 0), 0);
    await destroyMembers(reload(), ['etcd-0', 'etcd-1']);
    // With a wrong CA the survivor looks no different from the lost members, unless TLS is named: refused, nothing touched.
    const wrong = await cli('quorum', '--yes', '--cacert', other.ca.cert);
    assert.equal(wrong.code, 6, wrong.stderr);
    assert.deepEqual(errorLines(wrong), [`error: etcd at ${sb.member('etcd-2').clientURL}: the server's certificate is not signed by the CA in --cacert (unable to verify the first certificate)`]);
    assert.ok(reload().isRunning('etcd-2') && sb.hasData('etcd-2'), 'the survivor still runs on its data');
    const r = await cli('quorum', '--yes', '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const report = json(r);
    assert.equal(report.status, 'completed');
    assert.equal(report.restorePoint.kind, 'live');
    assert.equal(report.members.length, 3);
    assert.ok(report.revisionAfter > floor, `revision ${report.revisionAfter} > ${floor}`);
    reload();
    for (const m of sb.state.members) assertTlsArgs(sb, m.name);
    assert.deepEqual(await keysOnEveryMember(sb, 'k/'), [2_000, 2_000, 2_000]);
    const after = json(await cli('status', '-o', 'json'));
    assert.equal(after.quorum, true);
    assert.equal(after.healthy, 3);
  });

  it('backup drill of a backup taken over TLS restores it into a throwaway TLS cluster and proves it', async () => {
    const r = await cli('backup', 'drill', backup.name, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const report = json(r);
    assert.equal(report.tls, true);
    assert.equal(report.backup, backup.name);
    assert.equal(report.keys, backup.userKeys);
    assert.equal(report.members.length, 3);
    assert.ok(report.revisionAfter > backup.revision);
    assert.equal(new Set(report.members.map((m: { hashKV: number }) => m.hashKV)).size, 1);
    assert.match(r.stderr, /all 3 members hold the same keyspace/);
    // --no-tls drills the same backup in plaintext (what TLS changes is transport, not the data).
    const plain = await cli('backup', 'drill', backup.name, '--no-tls', '--members', '1', '-o', 'json');
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(json(plain).tls, false);
    assert.equal(json(plain).keys, backup.userKeys);
  });

  it('a CA that did not sign the members\' certificates: one line naming the endpoint and the cause (exit 6), and quorum stops nothing', async () => {
    reload();
    const ep = sb.member('etcd-0').clientURL;
    const line = `error: etcd at ${ep}: the server's certificate is not signed by the CA in --cacert (unable to verify the first certificate)`;
    const status = await cli('status', '--cacert', other.ca.cert);
    assert.equal(status.code, 6, status.stderr);
    assert.deepEqual(errorLines(status), [line]);
    assert.match(status.stderr, /next: pass the CA that signed the members' certificates: --cacert FILE, or --etcd-tls-dir DIR holding ca\.crt/);
    const asJson = json(await cli('status', '--cacert', other.ca.cert, '-o', 'json'));
    assert.deepEqual({ ...asJson.error, hint: undefined }, { code: 'ETCD_TLS', message: line.slice('error: '.length), hint: undefined, exitCode: 6, retryable: false });
    // Members our certificates cannot reach are not lost members: quorum refuses before anything is touched.
    const q = await cli('quorum', '--yes', '--cacert', other.ca.cert);
    assert.equal(q.code, 6, q.stderr);
    assert.deepEqual(errorLines(q), [line]);
    reload();
    assert.ok(sb.state.members.every((m) => sb.isRunning(m.name)), 'every member still runs');
    assert.equal(json(await cli('status', '-o', 'json')).healthy, 3);
  });

  it('without a client certificate: one line naming the endpoint and what to pass (exit 6)', async () => {
    const ep = sb.member('etcd-0').clientURL;
    const cause = `etcd at ${ep}: the server requires a client certificate: pass --cert/--key or --etcd-tls-dir`;
    const mi = sb.state.minio!;
    const env = { AWS_ACCESS_KEY_ID: mi.accessKey, AWS_SECRET_ACCESS_KEY: mi.secretKey };
    const r = await runCli(['backup', 'create', '--endpoints', ep, '--cacert', sb.state.tls!.caFile, '--bucket', mi.bucket, '--s3-endpoint', mi.url, '--cluster', sb.state.cluster], { env });
    assert.equal(r.code, 6, r.stderr);
    const lines = errorLines(r);
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0]!.includes(cause), lines[0]);
    // status over --endpoints names it per member.
    const s = json(await runCli(['status', '--endpoints', sb.endpoints().join(','), '--cacert', sb.state.tls!.caFile, '--bucket', mi.bucket, '--s3-endpoint', mi.url, '-o', 'json'], { env }));
    assert.deepEqual(s.members.map((m: { error: string }) => m.error), sb.endpoints().map((e) => `etcd at ${e}: the server requires a client certificate: pass --cert/--key or --etcd-tls-dir`));
    // …and the table says why each member is unreachable, not only that it is.
    const table = await runCli(['status', '--endpoints', sb.endpoints().join(','), '--cacert', sb.state.tls!.caFile, '--bucket', mi.bucket, '--s3-endpoint', mi.url], { env });
    for (const e of sb.endpoints()) assert.ok(table.stdout.includes(`: etcd at ${e}: the server requires a client certificate`), table.stdout);
  });

  it('a client certificate of another CA is named as rejected by the server (exit 6)', async () => {
    const ep = sb.member('etcd-0').clientURL;
    const r = await cli('status', '--cert', join(other.dir, 'client.crt'), '--key', join(other.dir, 'client.key'));
    assert.equal(r.code, 6, r.stderr);
    assert.deepEqual(errorLines(r), [`error: etcd at ${ep}: the server rejected the client certificate in --cert (tlsv1 alert unknown ca: it is not signed by a CA the server trusts)`]);
  });

  it('the etcd3 (grpc-js) calls name the TLS cause too: member list with the wrong CA', async () => {
    const gw = new Etcd3Gateway({ endpoints: sb.endpoints(), tls: { ...sb.etcdConnection().tls, ca: readFileSync(other.ca.cert) }, timeoutMs: 3_000 });
    try {
      await assert.rejects(gw.list(), (e: unknown) => {
        assert.ok(e instanceof EtcdRecoverError);
        assert.equal(e.code, 'ETCD_TLS');
        assert.equal(e.message, `etcd at ${sb.endpoints()[0]}: the server's certificate is not signed by the CA in --cacert (unable to verify the first certificate)`);
        return true;
      });
    } finally {
      gw.close();
    }
  });

  it('http:// to a TLS member and https:// to a plaintext member name the mismatch (exit 6); --tls on a plaintext sandbox is refused (exit 2)', async () => {
    const mi = sb.state.minio!;
    const env = { AWS_ACCESS_KEY_ID: mi.accessKey, AWS_SECRET_ACCESS_KEY: mi.secretKey };
    const bucket = ['--bucket', mi.bucket, '--s3-endpoint', mi.url, '--cluster', sb.state.cluster];
    const http = sb.member('etcd-1').clientURL.replace('https:', 'http:');
    const toTls = await runCli(['backup', 'create', '--endpoints', http, ...bucket], { env });
    assert.equal(toTls.code, 6, toTls.stderr);
    assert.equal(errorLines(toTls).length, 1, toTls.stderr);
    assert.ok(errorLines(toTls)[0]!.includes(`etcd at ${http}: the server speaks TLS: use an https:// endpoint`), toTls.stderr);

    const plainDir = join(tmp.path, 'plain');
    const plain = await SandboxClass.up({ dir: plainDir, members: 1, store: false });
    try {
      const https = plain.endpoints()[0]!.replace('http:', 'https:');
      const toPlain = await runCli(['backup', 'create', '--endpoints', https, '--etcd-tls-dir', sb.state.tls!.clientDir, ...bucket], { env });
      assert.equal(toPlain.code, 6, toPlain.stderr);
      assert.equal(errorLines(toPlain).length, 1, toPlain.stderr);
      assert.ok(errorLines(toPlain)[0]!.includes(`etcd at ${https}: the server does not speak TLS: use an http:// endpoint`), toPlain.stderr);

      const refused = await runCli(['sandbox', 'up', '--tls', '--sandbox-dir', plainDir]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.deepEqual(errorLines(refused), [`error: the sandbox at ${plainDir} was created without TLS`]);
      assert.match(refused.stderr, /next: remove it with `kubectl etcd-recover sandbox down --purge`, then `sandbox up --tls`/);
    } finally {
      await stopSandbox(plain);
    }
  });
});
