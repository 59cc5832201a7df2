// A SIMULATED host, for the demo and fast tests: domains and their power state
// live in a JSON file ({"domains": {"blue-1": "running", ...}}). It runs no
// hypervisor and powers nothing; production uses xl or virsh.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { abortReason } from '../abort.js';
import { checkDomainName, ToolstackError, type CallOptions, type DomainState, type Toolstack } from './toolstack.js';

type SimPower = 'running' | 'shut off';
interface SimFile {
  domains: Record<string, SimPower>;
}

export class SimToolstack implements Toolstack {
  readonly describe = 'sim (simulated host)';
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * The parsed file and the identity of the version it came from: reads skip
   * re-parsing (10,000 domains cost milliseconds each time) until the file
   * changes, by this process or anyone else (inode, size, mtime in ns).
   */
  private cache: { version: string; file: SimFile } | undefined;

  /** `seed`: domains created, running, when the state file does not exist yet. */
  constructor(
    private readonly file: string,
    seed: string[] = [],
  ) {
    if (!existsSync(file)) this.write({ domains: Object.fromEntries(seed.map((d) => [d, 'running' as const])) });
  }

  private version(): string | undefined {
    try {
      const st = statSync(this.file, { bigint: true });
      return `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      return undefined;
    }
  }

  private read(): SimFile {
    const version = this.version();
    if (version !== undefined && this.cache?.version === version) return this.cache.file;
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch (err) {
      throw new ToolstackError(['sim', this.file], `unreadable state file: ${(err as Error).message}`);
    }
    const domains = (parsed as SimFile | null)?.domains;
    if (typeof domains !== 'object' || domains === null) throw new ToolstackError(['sim', this.file], 'state file lacks "domains"');
    const file = { domains };
    this.cache = version === undefined ? undefined : { version, file };
    return file;
  }

  private write(s: SimFile): void {
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
    renameSync(tmp, this.file);
    // The renamed file is a new inode: remember what it holds.
    const version = this.version();
    this.cache = version === undefined ? undefined : { version, file: s };
  }

  /** File operations one at a time within this process; none starts once the caller has given up. */
  private serial<T>(fn: () => T, o: CallOptions = {}): Promise<T> {
    const guarded = () => {
      if (o.signal?.aborted) throw new ToolstackError(['sim', this.file], `not run: ${abortReason(o.signal)}`);
      return fn();
    };
    const next = this.queue.then(guarded, guarded);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private static toState(name: string, power: unknown): DomainState {
    if (power === 'running') return { name, observed: 'running', raw: 'running' };
    if (power === 'shut off') return { name, observed: 'stopped', raw: 'shut off' };
    return { name, observed: 'unknown', raw: String(power) };
  }

  list(o?: CallOptions): Promise<DomainState[]> {
    return this.serial(() => Object.entries(this.read().domains).map(([n, p]) => SimToolstack.toState(n, p)), o);
  }

  state(name: string, o?: CallOptions): Promise<DomainState> {
    checkDomainName(name);
    return this.serial(() => {
      const power = this.read().domains[name];
      return power === undefined ? { name, observed: 'missing' as const, raw: 'not on this host' } : SimToolstack.toState(name, power);
    }, o);
  }

  destroy(name: string, o?: CallOptions): Promise<void> {
    return this.set(name, 'shut off', o);
  }

  start(name: string, o?: CallOptions): Promise<void> {
    return this.set(name, 'running', o);
  }

  private set(name: string, power: SimPower, o?: CallOptions): Promise<void> {
    checkDomainName(name);
    return this.serial(() => {
      const current = this.read();
      const argv = ['sim', power === 'running' ? 'start' : 'destroy', name];
      if (!(name in current.domains)) throw new ToolstackError(argv, 'no such domain');
      // As libvirt does: destroying a stopped domain or starting a running one is refused.
      if (current.domains[name] === power) throw new ToolstackError(argv, power === 'running' ? 'domain is already active' : 'domain is not running');
      // A new object: a write that fails leaves the cache as the file is.
      this.write({ domains: { ...current.domains, [name]: power } });
    }, o);
  }
}
