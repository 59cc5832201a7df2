// What the brokers of a fleet must agree on (docs/design.md §4), behind one small
// interface: the fence race (exactly one survivor, whichever broker each
// request reaches) and the recent fences a storm limit counts. Two
// implementations: local (one host, in process, the default) and etcd (a
// fleet, linearizable). Reads never need coordination; power actions do, and
// when the store cannot answer they are refused, never done unchecked.

/** A node's power action, as the store keeps it. */
export interface Claim {
  cluster: string;
  node: string;
  /** The requester's own domain: marked means it lost the race. */
  requesterDomain: string;
  target: string;
  requestId: string;
  /** Marks last this long after the fence (timeouts.fence_race). */
  raceWindowMs: number;
  /** The cluster's storm window, if it has a limit: the fence is counted for this long. */
  stormWindowMs?: number;
  /** The cluster's fences_per_window: the claim itself refuses a new domain past it (a storm is simultaneous). */
  stormLimit?: number;
}

/** Facts the decision takes as input (the rules stay in Rego). */
export interface RaceFacts {
  /** The requester's own domain is being, or was just, fenced by another node. */
  requesterFenced: boolean;
  /** Distinct domains of the cluster fenced within its storm window, other than the request's target (Rego: recent_fences; at the limit, one more domain is refused). */
  recentFences: number;
}

/**
 * claimed: the target is marked for this requester (again, if the same
 * request reached another broker first; or by another node of the cluster
 * fencing it too, which keeps it marked); lost: the requester's own domain
 * was marked first by another node; storm: the cluster already fenced
 * stormLimit other domains within its window (recentFences, read in the claim).
 */
export type ClaimOutcome = { outcome: 'claimed' } | { outcome: 'lost' } | { outcome: 'storm'; recentFences: number };

/**
 * How a claimed power action ended, for the mark's life: fenced (confirmed
 * off); unsure (a destroy was issued and nothing refutes it: it may still
 * land, so the target stays marked as if fenced); untouched (nothing reached
 * the hypervisor, or the host does not have the domain).
 */
export type FenceEnd = 'fenced' | 'unsure' | 'untouched';

/** The store did not answer in time, or refused: nothing may be done that needs it. */
export class CoordinationUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CoordinationUnavailable';
  }
}

/** What each broker publishes about itself (fencectl fleet). */
export interface HostInfo {
  host_id: string;
  listen: string;
  config_digest: string;
  policy_revision: string;
  /** Domains this host's toolstack runs, of those in its clusters.yaml, with states. */
  domains: Record<string, string>;
  at: string;
}

/** What a restarted broker read back from its audit log (journal.ts), for a coordination that lives in the process. */
export interface Restorable {
  marks: { target: string; holder: string; at: number }[];
  fences: { cluster: string; target: string; at: number }[];
  raceWindowMs: number;
  stormWindowMs: (cluster: string) => number | undefined;
}

/**
 * What the store holds now, for `fencectl status` (read-only, never part of a
 * decision): the race marks and, per cluster with a storm limit, the domains
 * counted in its window.
 */
export interface CoordinationSnapshot {
  marks: {
    target: string;
    /** CLUSTER/NODE that marked it: that node's own domain is not the loser; the target's node is. */
    holder: string;
    /** A power action on it is running now (local: counted here; etcd: not known, omitted). */
    inflight?: number;
    /** When the mark lapses, ms from now (local only: etcd's leases say it themselves). */
    expiresInMs?: number;
    requestId?: string;
    hostId?: string;
    at?: string;
  }[];
  storms: { cluster: string; domains: string[] }[];
}

export interface Coordination {
  /** For logs and the ready line. */
  readonly describe: string;
  /**
   * `target`: the domain the request would fence. It is left out of the
   * count: fencing a domain already counted (the same request reached another
   * broker first, or the domain is fenced again) adds no distinct domain.
   */
  facts(q: { cluster: string; requesterDomain: string; node: string; target?: string; stormWindowMs?: number }): Promise<RaceFacts>;
  /**
   * Atomically: the requester has not lost and the cluster is under its storm
   * limit; then mark the target for it (and count it). The mark is kept alive
   * until finish().
   */
  claim(c: Claim): Promise<ClaimOutcome>;
  /** The power action ended: a fence that is or may be done renews the mark for the window from now. */
  finish(c: Claim, end: FenceEnd): Promise<void>;
  /**
   * Takes back what the audit log says this process knew before it stopped.
   * Only local coordination has it: a fleet's marks live in the store.
   */
  restore?(state: Restorable, nowMs?: number): void;
  /** Publishes this host (a lease: it vanishes when the broker does). */
  publish(info: HostInfo): Promise<void>;
  /** Every host that published, or only this one for local. */
  fleet(): Promise<HostInfo[]>;
  /** The marks and storm counts as they stand (fencectl status); bounded like any store call. */
  snapshot(): Promise<CoordinationSnapshot>;
  close(): Promise<void>;
}

/** The holder of a mark, as stored: one string per requesting node. */
export const holderOf = (c: Pick<Claim, 'cluster' | 'node'>): string => `${c.cluster}/${c.node}`;
