// A SIMULATED host, for the demo and fast tests: domains and their power state
// live in a JSON file ({"domains": {"blue-1": "running", ...}}). It runs no
// hypervisor and powers nothing; production uses xl or virsh.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
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

  /** `seed`: domains created, running, when the state file does not exist yet. */
  constructor(
    private readonly file: string,
    seed: string[] = [],
  ) {
    if (!existsSync(file)) this.write({ domains: Object.fromEntries(seed.map((d) => [d, 'running' as const])) });
  }

  private read(): SimFile {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch (err) {
      throw new ToolstackError(['sim', this.file], `unreadable state file: ${(err as Error).message}`);
    }
    const domains = (parsed as SimFile | null)?.domains;
    if (typeof domains !== 'object' || domains === null) throw new ToolstackError(['sim', this.file], 'state file lacks "domains"');
    return { domains };
  }

  private write(s: SimFile): void {
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
    renameSync(tmp, this.file);
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
      const s = this.read();
      if (!(name in s.domains)) throw new ToolstackError(['sim', power === 'running' ? 'start' : 'destroy', name], 'no such domain');
      s.domains[name] = power;
      this.write(s);
    }, o);
  }
}
