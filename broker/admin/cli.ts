// Option tables for the host's two programs, in the style of fence-agents'
// all_opt: one row per option (name, type, default, value name, help), one
// table per command. Everything a user reads or types is derived from them:
// the node:util parseArgs config, `--help`, and the man pages (admin/man.ts).
// The tables themselves are in admin/commands.ts.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export interface OptionSpec {
  /** The long flag, without its dashes. */
  name: string;
  type: 'string' | 'boolean';
  short?: string;
  /** What the value is, as help and the synopsis show it (FILE, CLUSTER). */
  value?: string;
  /** Applied when the option is not given. */
  default?: string;
  /**
   * The value of the flag given alone, which makes its value optional
   * (`--serial [DEVICE]`). Alone means last, or followed by another option;
   * a command with operands takes such a value only as `--name=VALUE`.
   */
  bare?: string;
  /** The only values accepted; checked after parsing, with a message naming them. */
  choices?: readonly string[];
  /** Needed on every run of the command (explain's alternatives are checked by its handler). */
  required?: boolean;
  /** One or two sentences, present tense, no final full stop needed. */
  help: string;
  /**
   * Its handler lands with another branch (named here): until then the option
   * is left out of parsing, help and the man pages, so nothing advertises what
   * does not work. Merging that branch removes this field.
   */
  planned?: string;
}

export interface CommandSpec {
  name: string;
  /** One line, for the command list and NAME-like places. */
  summary: string;
  /** Synopsis lines after the program and command name; derived from the options when absent. */
  synopsis?: string[];
  /** Paragraphs, plain text; `code` in backticks is kept as written. */
  description: string[];
  options: OptionSpec[];
  /** Positional operands after the options, each required (`fencectl channel NODE`). */
  operands?: OperandSpec[];
  /** The command's exit statuses, one line each: "0 ok", "1 ...". */
  exit: string[];
  /** As OptionSpec.planned, for a whole command. */
  planned?: string;
}

export interface OperandSpec {
  /** As help and the synopsis show it: NODE. */
  value: string;
  help: string;
}

export interface ProgramSpec {
  /** fencectl, fence-broker */
  name: string;
  summary: string;
  description: string[];
  /** One table per command; a program without commands has one, named "". */
  commands: CommandSpec[];
}

export class UsageError extends Error {}

export const HELP: OptionSpec = { name: 'help', short: 'h', type: 'boolean', help: 'Print this help and exit' };

/** What is usable in this build: planned commands and options left out. */
export const live = <T extends { planned?: string }>(xs: readonly T[]): T[] => xs.filter((x) => x.planned === undefined);

export const optionsOf = (cmd: CommandSpec): OptionSpec[] => [...live(cmd.options), HELP];

/** `--config FILE`, `--json`, `-h, --help`. */
export const flagText = (o: OptionSpec): string => `${o.short ? `-${o.short}, ` : ''}--${o.name}${o.type === 'string' ? ` ${valueWord(o)}` : ''}`;

/** FILE, or [DEVICE] when the value may be left out. */
const valueWord = (o: OptionSpec): string => (o.bare !== undefined ? `[${o.value ?? 'VALUE'}]` : o.value ?? 'VALUE');

/** The synopsis words of one option: `--cluster CLUSTER`, `[--json]`, `[--face node|sh]`. */
function synopsisWord(o: OptionSpec): string {
  const value = o.choices ? o.choices.join('|') : valueWord(o);
  const word = `--${o.name}${o.type === 'string' ? ` ${value}` : ''}`;
  return o.required ? word : `[${word}]`;
}

export const synopsisOf = (cmd: CommandSpec): string[] => cmd.synopsis ?? [[...live(cmd.options).map(synopsisWord), ...(cmd.operands ?? []).map((a) => a.value)].join(' ')];

/** The default as help shows it. */
const defaultText = (o: OptionSpec): string => (o.default !== undefined ? ` (default: ${o.default})` : '') + (o.bare !== undefined ? ` (${o.value ?? 'VALUE'} left out: ${o.bare})` : '');

const wrap = (text: string, width: number, indent: string): string => {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map((l) => indent + l).join('\n');
};

/** `PROG CMD --help`. */
export function commandHelp(prog: string, cmd: CommandSpec): string {
  const head = [prog, cmd.name].filter(Boolean).join(' ');
  const opts = optionsOf(cmd);
  const width = Math.max(...opts.map((o) => flagText(o).length)) + 2;
  const rows = opts.map((o) => {
    const text = `${o.help}${o.choices ? ` (one of ${o.choices.join(', ')})` : ''}${defaultText(o)}`;
    const body = wrap(text, 78 - 2 - width, ' '.repeat(2 + width)).trimStart();
    return `  ${flagText(o).padEnd(width)}${body}`;
  });
  return [
    `usage: ${synopsisOf(cmd).map((s) => `${head} ${s}`.trimEnd()).join(`\n       `)}`,
    '',
    wrap(cmd.summary, 78, ''),
    ...cmd.description.map((p) => `\n${wrap(p, 78, '')}`),
    ...operandRows(cmd),
    '',
    'options:',
    ...rows,
    '',
    'exit status:',
    ...cmd.exit.map((e) => wrap(e, 76, '    ').replace(/^ {4}/, '  ')),
    '',
  ].join('\n');
}

/** The operands block of a command's help; none when it takes none. */
function operandRows(cmd: CommandSpec): string[] {
  const operands = cmd.operands ?? [];
  if (!operands.length) return [];
  const width = Math.max(...operands.map((a) => a.value.length)) + 2;
  return ['', 'operands:', ...operands.map((a) => `  ${a.value.padEnd(width)}${wrap(a.help, 78 - 2 - width, ' '.repeat(2 + width)).trimStart()}`)];
}

/** `PROG --help` of a program with commands: the list. */
export function programHelp(prog: ProgramSpec): string {
  const cmds = live(prog.commands);
  const width = Math.max(...cmds.map((c) => c.name.length)) + 2;
  return [
    `usage: ${prog.name} COMMAND [OPTIONS]`,
    `       ${prog.name} COMMAND --help`,
    `       ${prog.name} --version`,
    '',
    wrap(prog.summary, 78, ''),
    '',
    'commands:',
    ...cmds.map((c) => `  ${c.name.padEnd(width)}${wrap(c.summary, 78 - 2 - width, ' '.repeat(2 + width)).trimStart()}`),
    '',
    wrap(`\`${prog.name} COMMAND --help\` shows a command's options; \`man ${prog.name}\` has them all.`, 78, ''),
    '',
  ].join('\n');
}

export type Values = Record<string, string | boolean | undefined>;

/** parseArgs' config of a command, from its table. */
export function parseArgsConfig(cmd: CommandSpec): NonNullable<ParseArgsConfig['options']> {
  const config: NonNullable<ParseArgsConfig['options']> = {};
  for (const o of optionsOf(cmd)) {
    config[o.name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.default !== undefined ? { default: o.type === 'boolean' ? o.default === 'true' : o.default } : {}) };
  }
  return config;
}

/**
 * The command's values, checked against its table: unknown flags, missing
 * values, choices and required options are usage errors naming the option.
 * `--help` is the caller's to look at (values.help).
 */
export const parseCommand = (cmd: CommandSpec, args: string[]): Values => parseCommandLine(cmd, args).values;

/** As parseCommand, with the command's operands: exactly as many as its table names, else a usage error naming them. */
export function parseCommandLine(cmd: CommandSpec, args: string[]): { values: Values; operands: string[] } {
  const operands = cmd.operands ?? [];
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: withBareValues(cmd, args), options: parseArgsConfig(cmd), strict: true, allowPositionals: operands.length > 0 }) as typeof parsed;
  } catch (e) {
    throw new UsageError((e as Error).message, { cause: e });
  }
  const { values, positionals } = parsed;
  // Asked for help or the version: nothing else is required.
  if (values.help || values.version) return { values, operands: positionals };
  for (const o of live(cmd.options)) {
    const v = values[o.name];
    if (o.required && v === undefined) throw new UsageError(`--${o.name}${o.value ? ` ${o.value}` : ''} is required`);
    if (o.choices && typeof v === 'string' && !o.choices.includes(v)) throw new UsageError(`--${o.name}: ${JSON.stringify(v)} is not one of ${o.choices.join(', ')}`);
  }
  const missing = operands.slice(positionals.length).map((a) => a.value);
  if (missing.length) throw new UsageError(`${missing.join(' ')} ${missing.length > 1 ? 'are' : 'is'} required`);
  if (positionals.length > operands.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[operands.length])}`);
  return { values, operands: positionals };
}

/**
 * Args with each option whose value may be left out (OptionSpec.bare) given
 * its bare value where it stands alone, so parseArgs sees `--name=VALUE`.
 * Nothing after `--` is touched.
 */
function withBareValues(cmd: CommandSpec, args: string[]): string[] {
  const bare = new Map(live(cmd.options).filter((o) => o.bare !== undefined).map((o) => [`--${o.name}`, o.bare as string]));
  if (!bare.size) return args;
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') return [...out, ...args.slice(i)];
    const value = bare.get(a);
    const next = args[i + 1];
    const alone = next === undefined || next.startsWith('-') || (cmd.operands ?? []).length > 0;
    if (value !== undefined && alone) out.push(`${a}=${value}`);
    else out.push(a);
  }
  return out;
}

/** `--help` anywhere among a command's arguments wins over what else is wrong there. */
export const asksHelp = (args: readonly string[]): boolean => args.some((a) => a === '--help' || a === '-h');

/** The one line after an error. */
export const tryHelp = (prog: string, cmd?: string): string => `Try '${[prog, cmd].filter(Boolean).join(' ')} --help'.`;
