// libvirt through virsh (any URI: qemu:///system, xen:///system), over a pool
// of long-lived virsh sessions (virsh-session.ts). virsh's error texts and exit
// codes are not parsed for meaning: existence is decided from
// `list --all --name`, state from `domstate --reason`.
import { checkDomainName, firstLine, ToolstackError, type CallOptions, type DomainState, type Observed, type RunResult, type Toolstack } from './toolstack.js';
import { VirshSessions } from './virsh-session.js';

/** `domstate` words → observed state. Paused, suspended, crashed, in shutdown: not off. */
export function virshObserved(raw: string): Observed {
  const s = raw.trim().replace(/\s*\(.*\)$/, '');
  switch (s) {
    case 'shut off':
      return 'stopped';
    case 'running':
    case 'idle':
    case 'blocked':
    case 'paused':
    case 'in shutdown':
    case 'pmsuspended':
    case 'crashed':
      return 'running';
    default:
      return 'unknown';
  }
}

/** `virsh list --all` table → states (names cannot contain spaces here; others are skipped). */
export function parseVirshList(out: string): DomainState[] {
  const rows: DomainState[] = [];
  for (const line of out.split('\n')) {
    // The header and its rule, when printed (a session runs --quiet: none).
    if (/^\s*Id\s+Name\s+State\s*$/.test(line) || /^\s*-+\s*$/.test(line)) continue;
    const m = /^\s*(\S+)\s+(\S+)\s+(\S.*?)\s*$/.exec(line);
    if (!m) continue;
    const [, , name, raw] = m as unknown as [string, string, string, string];
    rows.push({ name, observed: virshObserved(raw), raw });
  }
  return rows;
}

export class VirshToolstack implements Toolstack {
  readonly describe: string;
  private readonly sessions: VirshSessions;

  constructor(
    private readonly uri: string,
    private readonly timeoutMs: number,
    private readonly command = 'virsh',
  ) {
    this.describe = `virsh ${uri}`;
    this.sessions = new VirshSessions(command, uri);
  }

  /** One virsh command; `argv` (for messages) is what it would be as its own process. */
  private call(words: string[], o?: CallOptions): { argv: string[]; result: Promise<RunResult> } {
    return { argv: [this.command, '--quiet', '-c', this.uri, ...words], result: this.sessions.run(words, this.timeoutMs, o) };
  }

  async list(o?: CallOptions): Promise<DomainState[]> {
    const { argv, result } = this.call(['list', '--all'], o);
    const r = await result;
    if (r.exitCode !== 0) throw new ToolstackError(argv, `exit ${r.exitCode}: ${firstLine(r.stderr)}`);
    return parseVirshList(r.stdout);
  }

  /** Whether the host has the domain, from the name list alone. */
  private async exists(name: string, o?: CallOptions): Promise<boolean | undefined> {
    const r = await this.call(['list', '--all', '--name'], o).result;
    if (r.exitCode !== 0) return undefined;
    return r.stdout.split('\n').some((l) => l.trim() === name);
  }

  async state(name: string, o?: CallOptions): Promise<DomainState> {
    checkDomainName(name);
    const r = await this.call(['domstate', '--reason', '--domain', name], o).result;
    const raw = r.stdout.trim();
    if (r.exitCode === 0 && raw) return { name, observed: virshObserved(raw), raw };
    // domstate failed: not found, or something else? Ask the list, not the error text.
    const exists = await this.exists(name, o);
    if (exists === false) return { name, observed: 'missing', raw: 'not defined on this host' };
    return { name, observed: 'unknown', raw: `domstate exit ${r.exitCode}: ${firstLine(r.stderr) || raw}` };
  }

  async destroy(name: string, o?: CallOptions): Promise<void> {
    await this.act('destroy', name, o);
  }

  async start(name: string, o?: CallOptions): Promise<void> {
    await this.act('start', name, o);
  }

  close(): void {
    this.sessions.close();
  }

  private async act(verb: 'destroy' | 'start', name: string, o?: CallOptions): Promise<void> {
    const { argv, result } = this.call([verb, '--domain', checkDomainName(name)], o);
    const r = await result;
    if (r.exitCode !== 0) throw new ToolstackError(argv, `exit ${r.exitCode}: ${firstLine(r.stderr)}`);
  }
}
