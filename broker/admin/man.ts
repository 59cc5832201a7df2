// The man pages, generated from the sources and never written by hand:
//   fencectl(8), fence-broker(8)  from the option tables (admin/commands.ts)
//   fence_broker(8)               from the agent's metadata table (plugin/options.ts), as fence-agents does
//   clusters.yaml(5)              from schema/clusters.schema.json and its descriptions
// Pure: text in, roff out; admin/man-cli.ts writes the files.
import { flagText, live, optionsOf, synopsisOf, type CommandSpec, type OptionSpec, type ProgramSpec } from './cli.js';

export interface PageInfo {
  /** YYYY-MM-DD */
  date: string;
  version: string;
}

/** Running text: roff's escape character and hyphens of options; `code` in bold. */
export function roffText(s: string): string {
  return s
    .replace(/\\/g, '\\e')
    .replace(/(^|[\s([/|"'=`])(--?)(?=[A-Za-z])/g, (_m, pre: string, dashes: string) => `${pre}${dashes.replace(/-/g, '\\-')}`)
    .replace(/`([^`]+)`/g, '\\fB$1\\fR');
}

/** Words joined into lines of at most `width` bytes (a longer word stays whole). */
function fill(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && Buffer.byteLength(`${line} ${word}`) > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/**
 * Text lines, each safe at the start of a roff line: one sentence per line
 * (man pages' convention, and mandoc's), filled to 78 bytes.
 */
function textLines(s: string): string {
  return roffText(s)
    .split(/(?<=[.;!?])\s+(?=[A-Z`(])/)
    .flatMap((sentence) => fill(sentence, 78))
    .map((line) => (/^[.']/.test(line) ? `\\&${line}` : line))
    .join('\n');
}

/** NAME's one entry, `name \- what it is`, filled. */
const nameLine = (name: string, summary: string): string => fill(`${name.replace(/-/g, '\\-')} \\- ${roffText(summary.replace(/\.$/, ''))}`, 78).join('\n');

/** The page as mandoc wants it: no paragraph macro right after a section heading. */
const page = (lines: string[]): string => lines.join('\n').replace(/^(\.S[HS] .*)\n\.PP\n/gm, '$1\n') + '\n';

// .nh: paths and option names are not to be hyphenated.
const th = (name: string, section: number, info: PageInfo, manual: string) =>
  `.TH ${name.toUpperCase()} ${section} ${info.date} "fence-broker ${info.version}" "${manual}"\n.nh`;

/** `--config FILE` → bold flag, italic value; brackets, bars and choices as they are. */
function synopsisRoff(words: string): string {
  return words
    .split(' ')
    .map((w) => {
      const m = /^([[(]*)(--?[a-z][a-z-]*)(\]*\)*)$/.exec(w);
      if (m) return `${m[1]}\\fB${(m[2] as string).replace(/-/g, '\\-')}\\fR${m[3]}`;
      const v = /^([[(]*)([A-Z][A-Z_/]*)(\]*\)*)$/.exec(w);
      if (v) return `${v[1]}\\fI${v[2]}\\fR${v[3]}`;
      return roffText(w);
    })
    .join(' ');
}

function optionItem(o: OptionSpec): string {
  const flag = flagText(o).replace(/-/g, '\\-').replace(/ (\[?)([A-Z][A-Z_/]*)(\]?)$/, ' $1\\fI$2\\fR$3');
  const extra = [
    o.choices ? `One of ${o.choices.join(', ')}.` : '',
    o.default !== undefined ? `Default: ${o.default}.` : '',
    o.bare !== undefined ? `${o.value ?? 'VALUE'} left out: ${o.bare}.` : '',
    o.required ? 'Required.' : '',
  ]
    .filter(Boolean)
    .join(' ');
  return `.TP\n\\fB${flag}\\fR\n${textLines(`${o.help.replace(/\.?$/, '.')} ${extra}`.trim())}`;
}

function commandSection(prog: string, cmd: CommandSpec, heading: boolean): string {
  const out: string[] = [];
  if (heading) out.push(`.SS ${cmd.name}`, textLines(cmd.summary.replace(/\.?$/, '.')));
  for (const p of cmd.description) out.push('.PP', textLines(p));
  if (!heading) return out.join('\n');
  if (cmd.operands?.length) out.push('.PP', 'Operands:', '.RS', ...cmd.operands.map((a) => `.TP\n\\fI${a.value}\\fR\n${textLines(a.help.replace(/\.?$/, '.'))}`), '.RE');
  out.push('.PP', 'Options:', '.RS', ...optionsOf(cmd).map(optionItem), '.RE', '.PP', 'Exit status:', '.RS');
  for (const e of cmd.exit) out.push('.TP', `.B ${e.split(' ')[0]}`, textLines(e.split(' ').slice(1).join(' ')));
  out.push('.RE');
  void prog;
  return out.join('\n');
}

/** fencectl(8), fence-broker(8). */
export function programPage(prog: ProgramSpec, info: PageInfo, seeAlso: string[]): string {
  const cmds = live(prog.commands);
  const single = cmds.length === 1 && cmds[0]?.name === '';
  const out = [
    `.\\" Generated from broker/admin/commands.ts by broker/admin/man.ts; do not edit.`,
    th(prog.name, 8, info, "System Manager's Manual"),
    '.SH NAME',
    nameLine(prog.name, prog.summary),
    '.SH SYNOPSIS',
  ];
  const synopses = cmds.flatMap((c) => synopsisOf(c).map((s) => ({ c, s })));
  for (const [i, { c, s }] of synopses.entries()) {
    if (i > 0) out.push('.br');
    out.push(`\\fB${[prog.name, c.name].filter(Boolean).join(' ').replace(/-/g, '\\-')}\\fR ${synopsisRoff(s)}`.trimEnd());
  }
  out.push('.br', `\\fB${prog.name.replace(/-/g, '\\-')}\\fR ${single ? '\\fB\\-\\-help\\fR' : '[\\fICOMMAND\\fR] \\fB\\-\\-help\\fR'}`);
  if (!single) out.push('.br', `\\fB${prog.name.replace(/-/g, '\\-')} \\-\\-version\\fR`);
  out.push('.SH DESCRIPTION');
  for (const p of prog.description) out.push('.PP', textLines(p));
  if (single) {
    const cmd = cmds[0] as CommandSpec;
    out.push('.SH OPTIONS', ...optionsOf(cmd).map(optionItem), '.SH EXIT STATUS');
    for (const e of cmd.exit) out.push('.TP', `.B ${e.split(' ')[0]}`, textLines(e.split(' ').slice(1).join(' ')));
  } else {
    out.push('.SH COMMANDS');
    for (const c of cmds) out.push(commandSection(prog.name, c, true));
    out.push('.SH EXIT STATUS', textLines('0: ok, allowed or no change; 1: invalid, denied, not reloaded, or decisions differ; 2: usage or config error. Each command above lists its own.'));
  }
  out.push('.SH SEE ALSO', seeAlso.map((s, i) => `.BR ${s.replace(/\((\d)\)$/, ' ($1)')}${i < seeAlso.length - 1 ? ' ,' : ''}`).join('\n'));
  return page(out);
}

/** What the agent page needs of the plugin's option table and metadata (plugin/options.ts, plugin/fence-agents.ts). */
export interface AgentParameter {
  name: string;
  getopt: string;
  required: boolean;
  default?: string;
  shortdesc: string;
  deprecated?: boolean;
  obsoletes?: string;
}

export interface AgentMetadata {
  name: string;
  shortdesc: string;
  longdesc: string;
  parameters: AgentParameter[];
  actions: readonly string[];
  /** cluster-glue's getconfignames: the positions of Heartbeat's stonith_host. */
  configNames: readonly string[];
}

/** fence_broker(8), laid out as fence-agents' generated pages are: parameters by flag, actions, stdin parameters. */
export function agentPage(m: AgentMetadata, info: PageInfo): string {
  const param = (p: AgentParameter, label: string) => {
    const notes = [p.required ? 'This parameter is always required.' : '', p.default !== undefined ? `(Default Value: ${p.default})` : '', p.obsoletes ? `Obsoletes: ${p.obsoletes}.` : '', p.deprecated ? 'Deprecated.' : ''].filter(Boolean).join(' ');
    return `.TP\n\\fB${label}\\fR\n${textLines(`${p.shortdesc.replace(/\.?$/, '.')} ${notes}`.trim())}`;
  };
  const out = [
    `.\\" Generated from the agent's metadata (plugin/options.ts, plugin/fence-agents.ts) by broker/admin/man.ts; do not edit.`,
    th(m.name, 8, info, 'System Manager\'s Manual'),
    '.SH NAME',
    nameLine(m.name, m.shortdesc),
    '.SH SYNOPSIS',
    `\\fB${m.name}\\fR [\\fIOPTION\\fR]...`,
    '.br',
    `\\fB${m.name}\\fR < \\fIname=value lines\\fR`,
    '.SH DESCRIPTION',
    '.PP',
    textLines(m.longdesc),
    '.PP',
    textLines(`A fence-agents agent (Pacemaker's stonith:${m.name}): its options come as command-line flags, or as name=value lines on standard input when it has no arguments. \`${m.name} -o metadata\` prints the same parameters as XML.`),
    '.PP',
    textLines(`The same bundle is cluster-glue's external/fence-broker plugin (Heartbeat's stonith_host, Pacemaker's stonith:external/fence-broker), which reads its parameters from the environment; Heartbeat gives them by position, in this order: ${m.configNames.join(', ')}.`),
    '.SH PARAMETERS',
    ...m.parameters.filter((p) => !p.deprecated).map((p) => param(p, p.getopt.replace(/-/g, '\\-'))),
    '.SH ACTIONS',
    ...m.actions.map((a) => `.TP\n\\fB${a}\\fR\n${textLines(ACTION_TEXT[a] ?? 'See the metadata.')}`),
    '.SH STDIN PARAMETERS',
    ...m.parameters.map((p) => param(p, p.name)),
    '.SH EXIT STATUS',
    '.TP\n.B 0\nSuccess; for status, the domain is on.',
    '.TP\n.B 1\nFailure, or the broker refused.',
    '.TP\n.B 2\nFor status: the domain is off.',
    '.SH SEE ALSO',
    '.BR fence-broker (8) ,',
    '.BR fencectl (8) ,',
    '.BR stonith_admin (8)',
  ];
  return page(out);
}

const ACTION_TEXT: Record<string, string> = {
  on: 'Power the domain on; success once the broker confirms it running.',
  off: 'Power the domain off; success only once the broker confirms it off.',
  reboot: 'Off, then on (the broker resets it); the default action.',
  status: 'The domain\'s power state: exit 0 on, 2 off, 1 failure.',
  list: 'The domains this node\'s cluster may act on, with every broker asked.',
  'list-status': 'As list, with each domain\'s state.',
  monitor: 'Check that a broker answers with this node\'s key.',
  metadata: 'Print the agent\'s metadata (XML).',
  'validate-all': 'Check the parameters without asking a broker.',
};

// --- clusters.yaml(5) -----------------------------------------------------------

export interface Schema {
  description?: string;
  type?: string | string[];
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  required?: string[];
  allOf?: Schema[];
  oneOf?: Schema[];
  anyOf?: Schema[];
  if?: Schema;
  then?: Schema;
  else?: Schema;
  $ref?: string;
  enum?: unknown[];
  const?: unknown;
  items?: Schema;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  pattern?: string;
  title?: string;
  definitions?: Record<string, Schema>;
}

export interface SchemaKey {
  /** Dotted, with <name> for a key the admin picks: clusters.<cluster>.nodes.<node>.key */
  path: string;
  schema: Schema;
  required: boolean;
  /** "type: xl": the sibling setting this key belongs to. */
  when?: string;
}

/** The placeholder of a key the admin names: clusters → <cluster>. */
const placeholder = (parent: string): string => `<${{ clusters: 'cluster', nodes: 'node', admins: 'admin', domain_configs: 'domain' }[parent] ?? 'name'}>`;

/** The variant a conditional branch stands for: `type: xl`. */
function condition(s: Schema | undefined): string | undefined {
  const props = s?.properties ?? {};
  for (const [k, v] of Object.entries(props)) if (v.const !== undefined) return `${k}: ${String(v.const)}`;
  return undefined;
}

/** Every key of the schema, in document order; a key in several branches once per branch. */
export function schemaKeys(s: Schema, at: string[] = [], when?: string): SchemaKey[] {
  const out: SchemaKey[] = [];
  for (const [k, v] of Object.entries(s.properties ?? {})) {
    // An empty subschema (a then-branch's "type: {}") only re-allows a key described elsewhere.
    if (Object.keys(v).length === 0) continue;
    const path = [...at, k];
    out.push({ path: path.join('.'), schema: v, required: (s.required ?? []).includes(k), ...(when ? { when } : {}) });
    out.push(...schemaKeys(v, path));
  }
  if (s.additionalProperties && typeof s.additionalProperties === 'object') {
    const name = placeholder(at.at(-1) ?? '');
    out.push(...schemaKeys(s.additionalProperties, [...at, name]));
  }
  for (const sub of [...(s.allOf ?? []), ...(s.anyOf ?? [])]) out.push(...schemaKeys(sub.then ?? sub, at, condition(sub.if) ?? when));
  for (const sub of s.oneOf ?? []) out.push(...schemaKeys(sub, at, condition(sub) ?? when));
  return out;
}

const resolve = (root: Schema, s: Schema): Schema => (s.$ref ? { ...(root.definitions?.[s.$ref.replace('#/definitions/', '')] ?? {}), ...s, $ref: undefined } : s);

/** What a value may be, from the schema's own constraints. */
function valueText(root: Schema, raw: Schema): string {
  const s = resolve(root, raw);
  const parts: string[] = [];
  if (s.const !== undefined) parts.push(`\`${String(s.const)}\``);
  else if (s.enum) parts.push(`one of ${s.enum.map((e) => `\`${String(e)}\``).join(', ')}`);
  else if (s.type === 'array') {
    const item = s.items ? resolve(root, s.items) : undefined;
    parts.push(`a list${item?.enum ? ` of ${item.enum.map((e) => `\`${String(e)}\``).join(', ')}` : item?.$ref || item?.description ? '' : ''}`);
    if (item?.description) parts.push(`each: ${item.description.replace(/\.$/, '')}`);
  } else if (s.type) parts.push(String(s.type) === 'object' ? 'a mapping' : `a ${String(s.type)}`);
  if (s.exclusiveMinimum !== undefined) parts.push(`> ${s.exclusiveMinimum}`);
  if (s.minimum !== undefined) parts.push(`>= ${s.minimum}`);
  if (s.maximum !== undefined) parts.push(`<= ${s.maximum}`);
  if (s.pattern !== undefined && !raw.$ref) parts.push(`matching \`${s.pattern}\``);
  return parts.join(', ');
}

/** clusters.yaml(5): every key of the schema, with its description and constraints. */
export function configPage(root: Schema, info: PageInfo): string {
  const keys = schemaKeys(root);
  const sections = new Map<string, SchemaKey[]>();
  for (const k of keys) {
    const top = k.path.split('.')[0] as string;
    sections.set(top, [...(sections.get(top) ?? []), k]);
  }
  const out = [
    `.\\" Generated from schema/clusters.schema.json by broker/admin/man.ts; do not edit.`,
    th('clusters.yaml', 5, info, 'File Formats Manual'),
    '.SH NAME',
    nameLine('clusters.yaml', 'tenancy of a fence-broker host'),
    '.SH SYNOPSIS',
    '/etc/fence\\-broker/clusters.yaml',
    '.SH DESCRIPTION',
    '.PP',
    textLines(root.description ?? ''),
    '.PP',
    textLines('A YAML mapping; every key is listed below, by its dotted path, with <name> for a key the admin picks (a cluster, node, admin or domain name). Names match the one name pattern: letter or digit first, then letters, digits, _ . : -; at most 64 characters. Durations are in seconds. A key marked required must be there when its parent is; the others have the default their text gives. `fencectl check` validates a file, naming what is wrong and where.'),
  ];
  for (const [top, list] of sections) {
    out.push(`.SH ${top.toUpperCase()}`);
    for (const k of list) {
      const s = resolve(root, k.schema);
      const notes = [k.when ? `With ${k.when}.` : '', k.required ? 'Required.' : ''].filter(Boolean).join(' ');
      const value = valueText(root, k.schema);
      const description = s.description ?? '';
      out.push('.TP', `.B ${k.path.replace(/-/g, '\\-')}`, textLines([description, value ? `Value: ${value}.` : '', notes].filter(Boolean).join(' ')));
    }
  }
  out.push(
    '.SH EXAMPLE',
    textLines('The installed example, with every key (the optional ones commented out), is /opt/fence-broker/contrib/clusters.example.yaml.'),
    '.SH SEE ALSO',
    '.BR fence-broker (8) ,',
    '.BR fencectl (8)',
  );
  return page(out);
}
