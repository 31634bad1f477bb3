/**
 * Shell completion, as kubectl's plugin completion asks for it (kubectl >= 1.26 runs
 * `kubectl_complete-etcd_recover WORD... CURRENT`): the words after `kubectl etcd-recover`, the last
 * being the one under the cursor (maybe ""). The answer is Cobra's `__complete` format: one
 * `candidate<TAB>description` per line, then `:<directive>`.
 *
 * Pure: the commands and topics come in (oclif's manifest entries fit these shapes), the answer goes
 * out. Candidates that live in the cluster (backup and member names) are asked for as a `DynamicNeed`;
 * the command fetches them and hands them to `withDynamic`.
 */

/** Cobra's ShellCompDirective bits. */
export const Directive = { Default: 0, Error: 1, NoSpace: 2, NoFileComp: 4, KeepOrder: 32 } as const;

export interface CompletionFlag {
  name: string;
  char?: string | undefined;
  type: 'boolean' | 'option';
  options?: readonly string[] | undefined;
  multiple?: boolean | undefined;
  allowNo?: boolean | undefined;
  hidden?: boolean | undefined;
  summary?: string | undefined;
  description?: string | undefined;
  /** The environment variable the flag defaults to (the target flags have them). */
  env?: string | undefined;
}

export interface CompletionCommand {
  id: string;
  hidden?: boolean | undefined;
  summary?: string | undefined;
  description?: string | undefined;
  flags: Record<string, CompletionFlag>;
  args: Record<string, { name: string; options?: readonly string[] | undefined; description?: string | undefined }>;
}

export interface CompletionTopic {
  name: string;
  description?: string | undefined;
  hidden?: boolean | undefined;
}

export interface Candidate {
  value: string;
  description?: string;
}

/** Names that only the cluster knows: backups in its bucket, its members (by name or client URL). */
export type DynamicKind = 'backup' | 'member' | 'member-url';

export interface DynamicNeed {
  kind: DynamicKind;
  /** The command's flags as typed so far (else their environment variables): where the cluster is. */
  flags: Record<string, string | boolean>;
  /** What the candidates must start with. */
  toComplete: string;
  /** Put before each candidate: `--snapshot=` when completing `--snapshot=full-…`. */
  prefix: string;
}

export interface Completion {
  candidates: Candidate[];
  directive: number;
  dynamic?: DynamicNeed;
}

/** Which arguments and flags name things in the cluster. */
export const DYNAMIC: Record<string, { args?: Record<string, DynamicKind>; flags?: Record<string, DynamicKind> }> = {
  'backup:verify': { args: { name: 'backup' } },
  'backup:drill': { args: { name: 'backup' } },
  'backup:rekey': { args: { name: 'backup' } },
  'backup:export': { args: { name: 'backup' } },
  'backup:confirm': { args: { name: 'backup' } },
  'backup:create': { flags: { member: 'member-url' } },
  quorum: { flags: { snapshot: 'backup' } },
  'member:replace': { args: { member: 'member' } },
};

const ROOT_FLAGS: Candidate[] = [
  { value: '--help', description: 'Show help.' },
  { value: '--version', description: 'Show the version.' },
];

/** Completes `words` (the last is the word under the cursor) against the CLI's commands and topics. */
export function complete(words: string[], commands: CompletionCommand[], topics: CompletionTopic[], env: Record<string, string | undefined> = {}): Completion {
  const visible = commands.filter((c) => !c.hidden);
  const toComplete = words.at(-1) ?? '';
  const before = words.slice(0, -1);
  // The command: the longest run of leading words that names a topic or a command.
  let id = '';
  let used = 0;
  for (const w of before) {
    const next = id ? `${id}:${w}` : w;
    if (!visible.some((c) => c.id === next || c.id.startsWith(`${next}:`))) break;
    id = next;
    used++;
  }
  const command = visible.find((c) => c.id === id);
  if (!command) {
    if (toComplete.startsWith('-')) return filtered(id ? ROOT_FLAGS.slice(0, 1) : ROOT_FLAGS, toComplete, Directive.NoFileComp);
    if (used < before.length) return { candidates: [], directive: Directive.NoFileComp };
    return filtered(children(id, visible, topics), toComplete, Directive.NoFileComp);
  }
  return completeCommand(command, before.slice(used), toComplete, env);
}

/** The topics and commands one level below `parent` ("" for the root). */
function children(parent: string, commands: CompletionCommand[], topics: CompletionTopic[]): Candidate[] {
  const depth = parent ? parent.split(':').length : 0;
  const seen = new Map<string, Candidate>();
  for (const c of commands) {
    if (parent && !c.id.startsWith(`${parent}:`)) continue;
    const parts = c.id.split(':');
    const name = parts[depth]!;
    const own = parts.length === depth + 1 ? c : undefined;
    const topic = topics.find((t) => t.name === parts.slice(0, depth + 1).join(':'));
    if (topic?.hidden && !own) continue;
    const description = firstSentence(own?.summary ?? own?.description ?? topic?.description);
    if (!seen.has(name) || own) seen.set(name, { value: name, ...(description ? { description } : {}) });
  }
  return [...seen.values()].sort((a, b) => a.value.localeCompare(b.value));
}

function completeCommand(command: CompletionCommand, words: string[], toComplete: string, env: Record<string, string | undefined>): Completion {
  const flags = Object.values(command.flags).filter((f) => !f.hidden);
  const byName = (n: string) => flags.find((f) => f.name === n);
  const dynamic = DYNAMIC[command.id] ?? {};
  const { given, positionals, pending, dashdash } = readWords(words, flags);
  const where = () => withEnv(given, flags, env);
  const values = (f: CompletionFlag, typed: string, prefix: string): Completion => {
    if (f.options) return filtered(f.options.map((value) => ({ value })), typed, Directive.NoFileComp, prefix);
    const kind = dynamic.flags?.[f.name];
    if (kind) return { candidates: [], directive: dynamicDirective(kind), dynamic: { kind, flags: where(), toComplete: typed, prefix } };
    return { candidates: [], directive: Directive.Default };
  };
  if (pending) return values(pending, toComplete, '');
  if (toComplete.startsWith('--') && toComplete.includes('=')) {
    const [name, typed] = splitOnce(toComplete.slice(2));
    const f = byName(name);
    return f?.type === 'option' ? values(f, typed ?? '', `--${name}=`) : { candidates: [], directive: Directive.NoFileComp };
  }
  if (toComplete.startsWith('-') && !dashdash) {
    const out: Candidate[] = [];
    for (const f of flags) {
      if (!f.multiple && f.name in given) continue;
      const description = firstSentence(f.summary ?? f.description);
      const d = description ? { description } : {};
      out.push({ value: `--${f.name}`, ...d });
      if (f.allowNo) out.push({ value: `--no-${f.name}`, ...d });
      if (f.char && !toComplete.startsWith('--')) out.push({ value: `-${f.char}`, ...d });
    }
    out.push(ROOT_FLAGS[0]!);
    return filtered(out, toComplete, Directive.NoFileComp);
  }
  const arg = Object.values(command.args)[positionals];
  if (!arg) return { candidates: [], directive: Directive.NoFileComp };
  if (arg.options) return filtered(arg.options.map((value) => ({ value })), toComplete, Directive.NoFileComp);
  const kind = dynamic.args?.[arg.name];
  if (kind) return { candidates: [], directive: dynamicDirective(kind), dynamic: { kind, flags: where(), toComplete, prefix: '' } };
  return { candidates: [], directive: Directive.Default };
}

/** What the words before the cursor say: the flags given, how many arguments, a flag still waiting for its value. */
function readWords(words: string[], flags: CompletionFlag[]): { given: Record<string, string | boolean>; positionals: number; pending?: CompletionFlag; dashdash: boolean } {
  const byName = (n: string) => flags.find((f) => f.name === n);
  const given: Record<string, string | boolean> = {};
  let positionals = 0;
  let pending: CompletionFlag | undefined;
  let dashdash = false;
  for (const w of words) {
    if (pending) {
      given[pending.name] = w;
      pending = undefined;
    } else if (dashdash || !w.startsWith('-') || w === '-') {
      positionals++;
    } else if (w === '--') {
      dashdash = true;
    } else if (w.startsWith('--')) {
      const [name, value] = splitOnce(w.slice(2));
      const f = byName(name) ?? (name.startsWith('no-') ? byName(name.slice(3)) : undefined);
      if (!f) continue;
      if (f.type === 'boolean') given[f.name] = f.name === name;
      else if (value !== undefined) given[f.name] = value;
      else pending = f;
    } else {
      const f = flags.find((x) => x.char === w[1]);
      if (f?.type === 'option') {
        if (w.length > 2) given[f.name] = w.slice(2);
        else pending = f;
      } else if (f) given[f.name] = true;
    }
  }
  return { given, positionals, dashdash, ...(pending ? { pending } : {}) };
}

/** Backups come newest first: the shell keeps that order. */
function dynamicDirective(kind: DynamicKind): number {
  return kind === 'backup' ? Directive.NoFileComp | Directive.KeepOrder : Directive.NoFileComp;
}

/** Adds what the cluster answered (nothing when it did not answer in time) to a completion. */
export function withDynamic(c: Completion, found: Candidate[]): Completion {
  if (!c.dynamic) return c;
  const { toComplete, prefix } = c.dynamic;
  return { candidates: [...c.candidates, ...filtered(found, toComplete, c.directive, prefix).candidates], directive: c.directive };
}

/** Cobra's wire format: `candidate<TAB>description` lines, then `:<directive>`. */
export function formatCompletion(c: Completion): string {
  const lines = c.candidates.map((x) => (x.description ? `${x.value}\t${x.description}` : x.value));
  return [...lines, `:${c.directive}`].join('\n') + '\n';
}

function filtered(candidates: Candidate[], typed: string, directive: number, prefix = ''): Completion {
  return {
    candidates: candidates.filter((c) => c.value.startsWith(typed)).map((c) => ({ ...c, value: prefix + c.value })),
    directive,
  };
}

/** The flags as typed, else from their environment variables (as oclif would read them). */
function withEnv(given: Record<string, string | boolean>, flags: CompletionFlag[], env: Record<string, string | undefined>): Record<string, string | boolean> {
  const out = { ...given };
  for (const f of flags) {
    const v = f.env ? env[f.env] : undefined;
    if (!(f.name in out) && v !== undefined && v !== '') out[f.name] = f.type === 'boolean' ? v === 'true' || v === '1' : v;
  }
  return out;
}

function splitOnce(s: string): [string, string | undefined] {
  const i = s.indexOf('=');
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

/** One line for a description: its first sentence (a colon ends one too; parentheses do not). */
function firstSentence(s: string | undefined): string | undefined {
  const line = s?.split('\n')[0]?.trim();
  if (!line) return undefined;
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === '(') depth++;
    else if (ch === ')') depth = Math.max(0, depth - 1);
    else if (depth === 0 && '.:;'.includes(ch) && (i + 1 === line.length || line[i + 1] === ' ') && !/\b(e\.g|i\.e|etc)$/.test(line.slice(0, i))) {
      return line.slice(0, i) + '.';
    }
  }
  return line;
}
