// Xen through xl (or legacy xm, same verbs). State comes from the `xl list`
// table (its flags column); `xl list -l` JSON supplies exact names by domid when
// xl.conf gives JSON rather than SXP. An "invalid domain identifier" exits 1 on
// current Xen and 2 on older ones, so a failed lookup is settled by the list.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { checkDomainName, firstLine, run, ToolstackError, type CallOptions, type DomainState, type Observed, type Toolstack } from './toolstack.js';

/** The six-character flags column (r b p s c d): dying is off; anything else still holds a VM. */
export function xlObserved(flags: string): Observed {
  if (!/^[rbpscd-]{6}$/.test(flags)) return 'unknown';
  if (flags.includes('d')) return 'stopped';
  return 'running';
}

interface XlRow {
  id: number;
  name: string;
  flags: string;
}

/** `xl list` table, parsed from the right so names with spaces survive. */
export function parseXlTable(out: string): XlRow[] {
  const rows: XlRow[] = [];
  for (const line of out.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words.length < 6 || words[0] === 'Name') continue;
    const [id, , , flags] = words.slice(-5) as [string, string, string, string, string];
    if (!/^\d+$/.test(id)) continue;
    rows.push({ id: Number(id), name: words.slice(0, -5).join(' '), flags });
  }
  return rows;
}

/** `xl list -l` JSON → domid → name; undefined when the output is not JSON (SXP hosts). */
export function parseXlLong(out: string): Map<number, string> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(out);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const names = new Map<number, string>();
  for (const d of parsed as { domid?: unknown; config?: { c_info?: { name?: unknown } } }[]) {
    if (typeof d?.domid === 'number' && typeof d.config?.c_info?.name === 'string') names.set(d.domid, d.config.c_info.name);
  }
  return names;
}

const CONTROL_DOMAIN = 'Domain-0';
const MIGRATION_SUFFIXES = ['--incoming', '--migratedaway'];

export interface XlOptions {
  command?: string;
  configDir?: string;
  domainConfigs?: Record<string, string>;
}

export class XlToolstack implements Toolstack {
  readonly describe: string;
  private readonly command: string;

  constructor(
    private readonly timeoutMs: number,
    private readonly options: XlOptions = {},
  ) {
    this.command = options.command ?? 'xl';
    this.describe = this.command === 'xl' ? 'xl' : `xl (${this.command})`;
  }

  async list(o?: CallOptions): Promise<DomainState[]> {
    const argv = [this.command, 'list'];
    const table = await run(argv, this.timeoutMs, o);
    if (table.exitCode !== 0) throw new ToolstackError(argv, `exit ${table.exitCode}: ${firstLine(table.stderr)}`);
    const rows = parseXlTable(table.stdout);
    const long = await run([this.command, 'list', '-l'], this.timeoutMs, o);
    const names = long.exitCode === 0 ? parseXlLong(long.stdout) : undefined;
    return rows.map((row) => {
      const name = names?.get(row.id) ?? row.name;
      return { name, observed: xlObserved(row.flags), raw: row.flags };
    });
  }

  private name(name: string): string {
    checkDomainName(name);
    if (name === CONTROL_DOMAIN) throw new ToolstackError(['(refused)', name], 'the control domain is never a fencing target');
    return name;
  }

  async state(name: string, o?: CallOptions): Promise<DomainState> {
    this.name(name);
    const r = await run([this.command, 'list', name], this.timeoutMs, o);
    const row = r.exitCode === 0 ? parseXlTable(r.stdout).find((x) => x.name === name) : undefined;
    if (row) return { name, observed: xlObserved(row.flags), raw: row.flags };
    // Not found by name: settle it from the full list, never from the exit code.
    const all = await this.list(o);
    const same = all.find((d) => d.name === name);
    if (same) return same;
    const moving = all.find((d) => MIGRATION_SUFFIXES.some((s) => d.name === name + s));
    if (moving) return { name, observed: 'unknown', raw: `migrating (${moving.name} ${moving.raw})` };
    const cfg = this.configPath(name);
    if (existsSync(cfg)) return { name, observed: 'missing', raw: `not running on this host (config ${cfg})`, startable: true };
    return { name, observed: 'missing', raw: 'not on this host' };
  }

  async destroy(name: string, o?: CallOptions): Promise<void> {
    const argv = [this.command, 'destroy', this.name(name)];
    const r = await run(argv, this.timeoutMs, o);
    if (r.exitCode !== 0) throw new ToolstackError(argv, `exit ${r.exitCode}: ${firstLine(r.stderr)}`);
  }

  /** xl keeps no definitions: start means `xl create` of the domain's config file. */
  configPath(name: string): string {
    return this.options.domainConfigs?.[name] ?? join(this.options.configDir ?? '/etc/xen', `${name}.cfg`);
  }

  async start(name: string, o?: CallOptions): Promise<void> {
    const argv = [this.command, 'create', this.configPath(this.name(name))];
    const r = await run(argv, this.timeoutMs, o);
    if (r.exitCode !== 0) throw new ToolstackError(argv, `exit ${r.exitCode}: ${firstLine(r.stderr)}`);
  }
}
