// One host: the fence race and the storm count in this process (today's
// behaviour, no dependency). Each step is synchronous, so two requests racing
// to fence each other cannot both pass the claim.
import { holderOf, type Claim, type ClaimOutcome, type Coordination, type CoordinationSnapshot, type FenceEnd, type HostInfo, type RaceFacts, type Restorable } from './coordination.js';

interface Mark {
  holder: string;
  /** Power actions of this target in flight. */
  inflight: number;
  /** When the last fence that is or may be done ended (performance.now()). */
  fencedAt?: number;
  raceWindowMs: number;
}

export class LocalCoordination implements Coordination {
  readonly describe = 'local (this host only)';
  private readonly marks = new Map<string, Mark>();
  /** cluster → domain → until (performance.now()) */
  private readonly fences = new Map<string, Map<string, number>>();
  private self: HostInfo | undefined;

  private live(domain: string): Mark | undefined {
    const m = this.marks.get(domain);
    if (!m) return undefined;
    if (m.inflight > 0) return m;
    if (m.fencedAt !== undefined && performance.now() - m.fencedAt < m.raceWindowMs) return m;
    this.marks.delete(domain);
    return undefined;
  }

  /** Distinct domains of `cluster` fenced within its storm window, but for `except`. */
  private recent(cluster: string, except?: string): number {
    const now = performance.now();
    const m = this.fences.get(cluster);
    if (!m) return 0;
    for (const [d, until] of m) if (until <= now) m.delete(d);
    return except !== undefined && m.has(except) ? m.size - 1 : m.size;
  }

  facts(q: { cluster: string; requesterDomain: string; node: string; target?: string }): Promise<RaceFacts> {
    const own = this.live(q.requesterDomain);
    return Promise.resolve({ requesterFenced: own !== undefined && own.holder !== holderOf(q), recentFences: this.recent(q.cluster, q.target) });
  }

  claim(c: Claim): Promise<ClaimOutcome> {
    const holder = holderOf(c);
    const own = this.live(c.requesterDomain);
    if (own && own.holder !== holder) return Promise.resolve({ outcome: 'lost' });
    // The storm limit in the same step as the mark: requests fencing at once all see each other.
    if (c.stormLimit !== undefined && c.stormWindowMs !== undefined) {
      const recent = this.recent(c.cluster);
      if (!this.fences.get(c.cluster)?.has(c.target) && recent >= c.stormLimit) return Promise.resolve({ outcome: 'storm', recentFences: recent });
    }
    const mark = this.live(c.target);
    if (mark) {
      mark.holder = holder;
      mark.inflight++;
    } else this.marks.set(c.target, { holder, inflight: 1, raceWindowMs: c.raceWindowMs });
    if (c.stormWindowMs !== undefined) {
      const m = this.fences.get(c.cluster) ?? new Map<string, number>();
      m.set(c.target, performance.now() + c.stormWindowMs);
      this.fences.set(c.cluster, m);
    }
    return Promise.resolve({ outcome: 'claimed' });
  }

  /**
   * A fence done or maybe done (a destroy issued, not refuted) keeps the mark
   * for the window from now. Unlike etcd's, a mark here ends with an untouched
   * target: on one host no other broker can be fencing it meanwhile, and the
   * node may try again.
   */
  finish(c: Claim, end: FenceEnd): Promise<void> {
    const mark = this.marks.get(c.target);
    if (mark) {
      mark.inflight = Math.max(0, mark.inflight - 1);
      if (end !== 'untouched') mark.fencedAt = performance.now();
      this.live(c.target);
    }
    return Promise.resolve();
  }

  /**
   * Marks and storm counts read back from the audit log at start (journal.ts):
   * what this process kept before a crash. Times are epoch ms; the windows
   * run from them, so what has lapsed meanwhile is dropped at once.
   */
  restore(state: Restorable, nowMs = Date.now()): void {
    const perf = (at: number) => performance.now() - (nowMs - at);
    for (const m of [...state.marks].sort((a, b) => a.at - b.at)) {
      const mark = this.marks.get(m.target);
      if (mark && mark.inflight > 0) continue;
      this.marks.set(m.target, { holder: m.holder, inflight: 0, fencedAt: perf(m.at), raceWindowMs: state.raceWindowMs });
      this.live(m.target);
    }
    for (const f of state.fences) {
      const window = state.stormWindowMs(f.cluster);
      if (window === undefined) continue;
      const m = this.fences.get(f.cluster) ?? new Map<string, number>();
      m.set(f.target, Math.max(m.get(f.target) ?? 0, perf(f.at) + window));
      this.fences.set(f.cluster, m);
      this.recent(f.cluster);
    }
  }

  publish(info: HostInfo): Promise<void> {
    this.self = info;
    return Promise.resolve();
  }

  fleet(): Promise<HostInfo[]> {
    return Promise.resolve(this.self ? [this.self] : []);
  }

  snapshot(): Promise<CoordinationSnapshot> {
    const now = performance.now();
    const marks: CoordinationSnapshot['marks'] = [];
    for (const target of [...this.marks.keys()].sort()) {
      const m = this.live(target);
      if (!m) continue;
      marks.push({
        target,
        holder: m.holder,
        inflight: m.inflight,
        // In flight: held until the action ends, then the window runs.
        ...(m.inflight === 0 && m.fencedAt !== undefined ? { expiresInMs: Math.max(0, Math.round(m.fencedAt + m.raceWindowMs - now)) } : {}),
      });
    }
    const storms: CoordinationSnapshot['storms'] = [];
    for (const cluster of [...this.fences.keys()].sort()) {
      this.recent(cluster);
      const domains = [...(this.fences.get(cluster)?.keys() ?? [])].sort();
      if (domains.length) storms.push({ cluster, domains });
    }
    return Promise.resolve({ marks, storms });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
