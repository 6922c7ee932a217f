import { UsageError } from './errors.js';

/** One command-line flag. Every flag is accepted as `-name`, `--name`, `-name=value`, `--name=value`, `-name value`. */
export interface FlagSpec {
  /** Canonical long name (`output`, `config`, `if-replica-exists`). */
  readonly name: string;
  /** Other names (`o` for `output`). */
  readonly aliases?: readonly string[];
  readonly type: 'string' | 'boolean';
  /** Placeholder shown in help (`PATH`). */
  readonly placeholder?: string;
  readonly help: string;
}

export interface ParsedArgs {
  /** Values by canonical flag name; absent flags are missing. */
  readonly flags: Readonly<Record<string, string | boolean>>;
  readonly positionals: readonly string[];
  /** True when `-h`, `-help` or `--help` was given. */
  readonly help: boolean;
}

const TRUE_WORDS = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE_WORDS = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

/**
 * Parses `argv` for `command` in both Go `flag` style (`-config FILE`, `-o=PATH`, `-json`) and
 * GNU style (`--config FILE`, `--output=PATH`). Unlike Go's flag package, flags may also follow
 * positional arguments; `--` ends flag parsing. Boolean flags never consume the next argument
 * (`-json=false` turns one off), exactly as in Go.
 * @throws UsageError `unknown flag -x for <command> (see walship <command> -h)` and friends
 */
export function parseArgs(command: string, specs: readonly FlagSpec[], argv: readonly string[]): ParsedArgs {
  const byName = new Map<string, FlagSpec>();
  for (const spec of specs) {
    byName.set(spec.name, spec);
    for (const alias of spec.aliases ?? []) byName.set(alias, spec);
  }
  const hint = `see walship ${command} -h`;
  const flags: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.length < 2 || !arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    const body = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
    if (body === '' || body.startsWith('-') || body.startsWith('=')) {
      throw new UsageError(`bad flag syntax: ${arg} (${hint})`);
    }
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const inline = eq < 0 ? undefined : body.slice(eq + 1);
    if (name === 'h' || name === 'help') {
      help = true;
      continue;
    }
    const spec = byName.get(name);
    if (!spec) throw new UsageError(`unknown flag ${arg.startsWith('--') ? '--' : '-'}${name} for ${command} (${hint})`);
    if (spec.type === 'boolean') {
      if (inline === undefined || TRUE_WORDS.has(inline)) flags[spec.name] = true;
      else if (FALSE_WORDS.has(inline)) flags[spec.name] = false;
      else throw new UsageError(`invalid boolean value ${JSON.stringify(inline)} for -${name}: use true or false (${hint})`);
      continue;
    }
    if (inline !== undefined) {
      flags[spec.name] = inline;
      continue;
    }
    if (i + 1 >= argv.length) throw new UsageError(`flag -${name} needs a value (${hint})`);
    flags[spec.name] = argv[++i]!;
  }
  return { flags, positionals, help };
}

/** Reads a string flag. */
export function stringFlag(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags[name];
  return typeof v === 'string' ? v : undefined;
}

/** Reads a boolean flag (false when absent). */
export function boolFlag(args: ParsedArgs, name: string): boolean {
  return args.flags[name] === true;
}

/** Formats the flag list of a command for `-h`. */
export function formatFlagHelp(specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const names = [s.name, ...(s.aliases ?? [])]
      .sort((a, b) => a.length - b.length)
      .map((n) => (n.length === 1 ? `-${n}` : `--${n}`))
      .join(', ');
    return [`${names}${s.placeholder ? ` ${s.placeholder}` : ''}`, s.help] as const;
  });
  const width = Math.max(0, ...rows.map((r) => r[0].length));
  return rows.map(([left, help]) => `  ${left.padEnd(width)}  ${help.replace(/\n/g, `\n  ${' '.repeat(width)}  `)}`).join('\n');
}
