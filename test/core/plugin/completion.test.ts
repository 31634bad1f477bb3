import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { complete, formatCompletion, withDynamic, type CompletionCommand, type CompletionTopic } from '@etcd-recover/kubectl-plugin';
import { repoRoot } from '../../support/binaries.js';

// The real CLI surface: the oclif manifest the build writes and the topics in package.json.
const plugin = join(repoRoot, 'packages', 'kubectl-plugin');
const manifest = JSON.parse(readFileSync(join(plugin, 'oclif.manifest.json'), 'utf8')) as { commands: Record<string, CompletionCommand> };
const pjson = JSON.parse(readFileSync(join(plugin, 'package.json'), 'utf8')) as { oclif: { topics: Record<string, { description: string }> } };
const commands = Object.values(manifest.commands);
const topics: CompletionTopic[] = Object.entries(pjson.oclif.topics).map(([name, t]) => ({ name, description: t.description }));

const values = (words: string[], env: Record<string, string> = {}) => complete(words, commands, topics, env).candidates.map((c) => c.value);

describe('shell completion (pure: words in, candidates and directive out)', () => {
  it('the root: topics and commands with descriptions, no hidden ones (agent, __complete), no file completion', () => {
    const c = complete([''], commands, topics);
    assert.deepEqual(c.candidates, [
      { value: 'backup', description: 'Create, list, verify and prune etcd snapshots in the backup bucket.' },
      { value: 'member', description: 'Replace a failed member while quorum holds.' },
      { value: 'quorum', description: 'Restore a cluster that lost quorum.' },
      { value: 'sandbox', description: 'A local etcd cluster and S3 bucket as processes on loopback.' },
      { value: 'status', description: 'Health of every member and of the backups.' },
    ]);
    assert.equal(c.directive, 4);
    assert.equal(c.dynamic, undefined);
    assert.deepEqual(values(['ba']), ['backup']);
    assert.deepEqual(values(['-']), ['--help', '--version']);
    assert.deepEqual(values(['agent', '']), []);
    assert.deepEqual(values(['nosuch', '']), []);
  });

  it('a topic: its commands', () => {
    assert.deepEqual(values(['backup', '']), ['confirm', 'create', 'drill', 'export', 'history', 'import', 'list', 'prune', 'rekey', 'verify']);
    assert.deepEqual(values(['backup', 're']), ['rekey']);
    assert.deepEqual(values(['sandbox', '']), ['down', 'status', 'up']);
    assert.deepEqual(values(['member', '']), ['replace']);
  });

  it("a command's flags: long and short, --no- for negatable ones, none already given (unless repeatable), --help", () => {
    const all = values(['status', '-']);
    for (const f of ['--output', '-o', '--namespace', '-n', '--rpo', '--watch', '--fail', '--no-fail', '--help']) assert.ok(all.includes(f), f);
    assert.deepEqual(values(['status', '--w']), ['--watch']);
    assert.deepEqual(values(['status', '--rpo', '1h', '--rp']), []);
    assert.ok(!values(['status', '--']).includes('-o'), 'only long flags after --');
    assert.deepEqual(values(['backup', 'create', '--label', 'a=b', '--lab']), ['--label']);
    assert.equal(complete(['status', '--w'], commands, topics).candidates[0]!.description, 'Re-render every --interval seconds until interrupted.');
  });

  it('flag values: the options of a flag that has them, also as --flag=value; a free value leaves the shell its file completion', () => {
    assert.deepEqual(values(['status', '-o', '']), ['table', 'wide', 'json', 'yaml']);
    assert.deepEqual(values(['status', '--output', 'y']), ['yaml']);
    assert.deepEqual(values(['status', '--output=j']), ['--output=json']);
    assert.deepEqual(values(['backup', 'list', '--s3-sse', 'SSE-']), ['SSE-S3', 'SSE-KMS', 'SSE-C']);
    assert.deepEqual(complete(['backup', 'verify', '--file', ''], commands, topics), { candidates: [], directive: 0 });
    assert.deepEqual(complete(['backup', 'import', ''], commands, topics), { candidates: [], directive: 0 });
    assert.deepEqual(complete(['backup', 'export', '--', '-odd-name', ''], commands, topics), { candidates: [], directive: 0 }, 'after --, words are arguments: this is FILE');
  });

  it('backup names: asked of the cluster, with the typed target flags (else their environment variables), newest first (KeepOrder)', () => {
    const c = complete(['backup', 'verify', '-n', 'hcp', '--context=prod', 'fu'], commands, topics, { ETCD_RECOVER_SANDBOX: '/sb', ETCD_RECOVER_CLUSTER: 'etcd' });
    assert.deepEqual(c, {
      candidates: [],
      directive: 4 | 32,
      dynamic: { kind: 'backup', flags: { namespace: 'hcp', context: 'prod', 'sandbox-dir': '/sb', cluster: 'etcd' }, toComplete: 'fu', prefix: '' },
    });
    for (const words of [['backup', 'drill', ''], ['backup', 'rekey', ''], ['backup', 'export', ''], ['backup', 'confirm', ''], ['quorum', '--snapshot', '']]) {
      assert.equal(complete(words, commands, topics).dynamic?.kind, 'backup', words.join(' '));
    }
    // export NAME FILE: the second argument is a file again.
    assert.deepEqual(complete(['backup', 'export', 'full-1', ''], commands, topics), { candidates: [], directive: 0 });
  });

  it('what the cluster answered: filtered by the typed word, with --flag= before each when completing one', () => {
    const found = [{ value: 'full-2', description: 'newest' }, { value: 'full-1' }, { value: 'other' }];
    assert.deepEqual(withDynamic(complete(['backup', 'verify', 'fu'], commands, topics), found).candidates, [{ value: 'full-2', description: 'newest' }, { value: 'full-1' }]);
    const eq = withDynamic(complete(['quorum', '--snapshot=full-1'], commands, topics), found);
    assert.deepEqual(eq, { candidates: [{ value: '--snapshot=full-1' }], directive: 36 });
    assert.deepEqual(withDynamic(complete(['backup', 'verify', ''], commands, topics), []), { candidates: [], directive: 36 }, 'no answer: the directive alone');
  });

  it('member names for member replace, client URLs for backup create --member; nothing after the last argument', () => {
    assert.equal(complete(['member', 'replace', ''], commands, topics).dynamic?.kind, 'member');
    assert.equal(complete(['backup', 'create', '--member', ''], commands, topics).dynamic?.kind, 'member-url');
    assert.deepEqual(complete(['member', 'replace', 'etcd-2', ''], commands, topics), { candidates: [], directive: 4 });
    assert.deepEqual(complete(['status', ''], commands, topics), { candidates: [], directive: 4 });
  });

  it("Cobra's wire format", () => {
    assert.equal(formatCompletion({ candidates: [{ value: 'backup', description: 'Backups.' }, { value: 'json' }], directive: 4 }), 'backup\tBackups.\njson\n:4\n');
    assert.equal(formatCompletion({ candidates: [], directive: 0 }), ':0\n');
  });
});
