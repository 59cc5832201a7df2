// A fleet: the fence race and the storm count in etcd (docs/design.md §4), so that
// every broker judges a race the same way. Keys, under the prefix:
//   race/<domain>/<request id>@<host id>  a mark: one per claim, on that claim's own lease
//   fences/<cluster>/<domain>             a fence counted for the cluster's storm window
//   storm/<cluster>                       the guard every counted claim bumps
//   hosts/<host id>                       this broker in the fleet view
// A node has lost when its domain carries a mark held by another node.
//
// A claim is one decision with one absolute deadline (coordination.timeout):
// one read (a transaction of ranges: the requester's marks and, with a storm
// limit, the cluster's fences and guard) while the race lease is granted;
// then one commit: no mark was added to the requester's domain since the read
// (mod revisions over its prefix) and the guard is unchanged; then the target
// gets this claim's mark and the fence is counted. A failed compare returns
// fresh reads in the same answer, and the claim tries again within the
// deadline. Past the deadline nothing more is sent, and the answer is
// CoordinationUnavailable ("nothing was done" is then true).
//
// etcd3's own retry is off: it resent transactions that timed out but had
// been applied. A commit without an answer is settled by re-reading this
// claim's mark, within one more timeout; never resent. Nothing is revoked or
// deleted: each mark is its claim's own key, so a late or repeated claim (the
// same request reaches every broker) can neither replace nor remove another's
// mark, and unused leases lapse. What remains: a commit that reaches etcd only
// after its re-read (held on the way) can still mark a target for a request
// that was told nothing was done; that makes the target's node a loser for
// the window, never a second fence.
//
// A mark lives as long as its fence might: its lease is kept alive while the
// power action runs, and renewed at finish() for the window from then when
// the target is, or may yet be, off. fence_race is checked at load to outlast
// the request deadline and both coordination bounds (crosscheck.ts).
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3, isRecoverableError, type ICompare, type IOptions, type IRequestOp, type ITxnResponse, type Namespace } from 'etcd3';
import { CoordinationUnavailable, holderOf, type Claim, type ClaimOutcome, type Coordination, type CoordinationSnapshot, type FenceEnd, type HostInfo, type RaceFacts } from './coordination.js';

export interface EtcdSettings {
  endpoints: string[];
  prefix: string;
  timeoutMs: number;
  tls?: { ca: string; cert?: string; key?: string };
  hostId: string;
}

interface MarkValue {
  holder: string;
  request_id: string;
  host_id: string;
  at: string;
}

/** What one read of the store says about a claim. */
interface State {
  revision: bigint;
  /** Holders of the marks on the requester's own domain. */
  ownHolders: string[];
  /** Domains of the cluster counted in its storm window. */
  fences: string[];
  /** The storm guard's mod revision (0: never written). */
  guardRev: string;
}

/** A claim whose fence may be running: its lease is kept alive until finish(). */
interface Held {
  key: Buffer;
  value: Buffer;
  leaseId: string;
  timer: NodeJS.Timeout;
}

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));
/** How long a published host entry outlives its broker. */
const HOST_TTL_S = 10;
/** Claims of one cluster share a storm lease granted less than this ago. */
const STORM_LEASE_REUSE_MS = 1_000;
const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** The first key after every key starting with `p` (p ends in '/', so its last byte is never 0xff). */
function prefixEnd(p: Buffer): Buffer {
  const end = Buffer.from(p);
  end[end.length - 1] = (end[end.length - 1] ?? 0) + 1;
  return end;
}

/**
 * Calls once, no retry. etcd3's default retries every "recoverable" error,
 * a deadline included: a transaction applied whose answer came late was sent
 * again and misjudged. Here each caller decides what is safe to repeat.
 */
const NO_RETRY = {
  execute: <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> =>
    Promise.resolve().then(() => fn({ signal: signal ?? new AbortController().signal })),
} as unknown as NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

export class EtcdCoordination implements Coordination {
  readonly describe: string;
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private readonly prefix: string;
  private hostLease: ReturnType<Etcd3['lease']> | undefined;
  private closed = false;
  /** Claims in flight, by request id. */
  private readonly held = new Map<string, Held>();
  /** cluster → its storm lease, and when it was asked for (epoch ms). */
  private readonly stormLeases = new Map<string, { id: Promise<string>; sentAt: number }>();

  constructor(private readonly s: EtcdSettings) {
    this.describe = `etcd ${s.endpoints.join(',')} ${s.prefix}`;
    const creds = s.tls
      ? {
          credentials: {
            rootCertificate: readFileSync(s.tls.ca),
            ...(s.tls.cert ? { certChain: readFileSync(s.tls.cert) } : {}),
            ...(s.tls.key ? { privateKey: readFileSync(s.tls.key) } : {}),
          },
        }
      : {};
    this.client = new Etcd3({
      hosts: s.endpoints,
      dialTimeout: s.timeoutMs,
      // A bound for calls that do not pass their own deadline (the host lease).
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + s.timeoutMs }),
      faultHandling: { global: NO_RETRY },
      ...creds,
    });
    this.prefix = s.prefix.endsWith('/') ? s.prefix : `${s.prefix}/`;
    this.ns = this.client.namespace(this.prefix);
  }

  private key = (k: string): Buffer => Buffer.from(this.prefix + k);
  private markPrefix = (domain: string) => this.key(`race/${domain}/`);
  private fencesPrefix = (cluster: string) => this.key(`fences/${cluster}/`);
  private guardKey = (cluster: string) => this.key(`storm/${cluster}`);

  /** `p` by `deadline` (epoch ms), or CoordinationUnavailable saying which step. The calls carry the same gRPC deadline; this ends the wait even if one does not end. */
  private async by<T>(step: string, deadline: number, p: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new CoordinationUnavailable(`etcd: ${step}: no answer within ${this.s.timeoutMs} ms`)), Math.max(0, deadline - Date.now()));
        }),
      ]);
    } catch (err) {
      if (err instanceof CoordinationUnavailable) throw err;
      throw new CoordinationUnavailable(`etcd: ${step}: ${errorText(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  /** A call safe to repeat (a read, a lease grant, a put of the same value): tried again, on another member, while the deadline allows. */
  private async retrying<T>(deadline: number, call: (opts: { deadline: number }) => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await call({ deadline });
      } catch (err) {
        if (!(err instanceof Error) || !isRecoverableError(err) || Date.now() + 50 >= deadline || this.closed) throw err;
        await sleep(20);
      }
    }
  }

  private static holder(raw: Buffer): string {
    try {
      return (JSON.parse(raw.toString()) as MarkValue).holder;
    } catch {
      // An unreadable mark still marks: treat it as someone else's.
      return '?';
    }
  }

  /** The ranges a claim decides on; also the failure branch of its commit, so a lost compare costs no extra round trip. */
  private readOps(q: { cluster: string; requesterDomain: string; stormWindowMs?: number }): IRequestOp[] {
    const own = this.markPrefix(q.requesterDomain);
    const ops: IRequestOp[] = [{ request_range: { key: own, range_end: prefixEnd(own) } }];
    if (q.stormWindowMs !== undefined) {
      const fences = this.fencesPrefix(q.cluster);
      ops.push({ request_range: { key: fences, range_end: prefixEnd(fences), keys_only: true } }, { request_range: { key: this.guardKey(q.cluster), keys_only: true } });
    }
    return ops;
  }

  private stateOf(r: ITxnResponse, q: { cluster: string }): State {
    const [own, fences, guard] = r.responses.map((x) => x.response_range?.kvs ?? []);
    const fencesAt = this.fencesPrefix(q.cluster).length;
    return {
      revision: BigInt(r.header.revision),
      ownHolders: (own ?? []).map((kv) => EtcdCoordination.holder(kv.value)),
      fences: (fences ?? []).map((kv) => kv.key.subarray(fencesAt).toString()),
      guardRev: guard?.[0]?.mod_revision ?? '0',
    };
  }

  /** One round trip: a transaction of ranges only. */
  private async read(q: { cluster: string; requesterDomain: string; stormWindowMs?: number }, deadline: number): Promise<State> {
    const r = await this.retrying(deadline, (o) => this.client.kv.txn({ compare: [], success: this.readOps(q), failure: [] }, o));
    return this.stateOf(r, q);
  }

  private grant(ttlS: number, deadline: number): Promise<string> {
    return this.retrying(deadline, (o) => this.client.leaseClient.leaseGrant({ TTL: ttlS }, o)).then((r) => r.ID);
  }

  /** Resets a lease to its full TTL; returns the TTL etcd reports (0 or less: the lease is gone). */
  private async keepAlive(id: string, deadline: number): Promise<number> {
    const stream = await this.client.leaseClient.leaseKeepAlive({ deadline });
    try {
      return await new Promise<number>((resolve, reject) => {
        stream.on('data', (r) => resolve(Number(r.TTL)));
        stream.on('error', reject);
        stream.on('end', () => reject(new Error('the keepalive stream ended without an answer')));
        stream.write({ ID: id });
      });
    } finally {
      stream.end();
    }
  }

  /**
   * One storm lease per cluster, shared by the claims of the next second
   * instead of one grant (a consensus write) per claim. Its TTL covers that
   * second and a claim's bound too, so every fence is counted at least its
   * window (and at most a few seconds more).
   */
  private stormLease(cluster: string, windowMs: number, deadline: number): Promise<string> {
    const now = Date.now();
    const cached = this.stormLeases.get(cluster);
    if (cached && now - cached.sentAt < STORM_LEASE_REUSE_MS) return cached.id;
    const entry = { id: this.grant(seconds(windowMs + STORM_LEASE_REUSE_MS + this.s.timeoutMs), deadline), sentAt: now };
    this.stormLeases.set(cluster, entry);
    entry.id.catch(() => {
      if (this.stormLeases.get(cluster) === entry) this.stormLeases.delete(cluster);
    });
    return entry.id;
  }

  async facts(q: { cluster: string; requesterDomain: string; node: string; target?: string; stormWindowMs?: number }): Promise<RaceFacts> {
    const deadline = Date.now() + this.s.timeoutMs;
    const s = await this.by('read race facts', deadline, () => this.read(q, deadline));
    return { requesterFenced: s.ownHolders.some((h) => h !== holderOf(q)), recentFences: q.stormWindowMs === undefined ? 0 : s.fences.filter((d) => d !== q.target).length };
  }

  async claim(c: Claim): Promise<ClaimOutcome> {
    const holder = holderOf(c);
    const deadline = Date.now() + this.s.timeoutMs;
    // Set at the deadline: from then on this claim sends nothing more.
    let cancelled = false;
    const timer = setTimeout(() => (cancelled = true), this.s.timeoutMs);
    const mine = this.key(`race/${c.target}/${c.requestId}@${this.s.hostId}`);
    const value = Buffer.from(JSON.stringify({ holder, request_id: c.requestId, host_id: this.s.hostId, at: new Date().toISOString() } satisfies MarkValue));
    const storm = c.stormWindowMs !== undefined;
    const past = (what: string) => new CoordinationUnavailable(`etcd: claim: the deadline of ${this.s.timeoutMs} ms passed before ${what}; nothing was written`);
    try {
      // The leases are granted while the marks are read: one round trip, not three.
      const lease = this.grant(seconds(c.raceWindowMs), deadline);
      const stormLease = storm ? this.stormLease(c.cluster, c.stormWindowMs as number, deadline) : Promise.resolve(undefined);
      lease.catch(() => undefined);
      stormLease.catch(() => undefined);
      let state = await this.by('claim: read the marks', deadline, () => this.read(c, deadline));
      for (;;) {
        if (state.ownHolders.some((h) => h !== holder)) return { outcome: 'lost' };
        if (c.stormLimit !== undefined && storm && !state.fences.includes(c.target) && state.fences.length >= c.stormLimit) {
          return { outcome: 'storm', recentFences: state.fences.length };
        }
        if (cancelled) throw past('the leases were granted');
        const [leaseId, stormId] = await this.by('claim: grant the leases', deadline, () => Promise.all([lease, stormLease]));
        if (cancelled) throw past('the commit');
        const own = this.markPrefix(c.requesterDomain);
        const compare: ICompare[] = [{ key: own, range_end: prefixEnd(own), target: 'Mod', result: 'Less', mod_revision: String(state.revision + 1n) }];
        const success: IRequestOp[] = [{ request_put: { key: mine, value, lease: leaseId } }];
        if (storm) {
          compare.push({ key: this.guardKey(c.cluster), target: 'Mod', result: 'Equal', mod_revision: state.guardRev });
          success.push(
            { request_put: { key: this.key(`fences/${c.cluster}/${c.target}`), value: Buffer.from(c.requestId), ...(stormId ? { lease: stormId } : {}) } },
            { request_put: { key: this.guardKey(c.cluster), value: Buffer.from(c.requestId) } },
          );
        }
        let r: ITxnResponse;
        try {
          r = await this.by('claim: commit', deadline, () => this.client.kv.txn({ compare, success, failure: this.readOps(c) }, { deadline }));
        } catch (err) {
          if (await this.settle(c, mine, value, leaseId, err)) return { outcome: 'claimed' };
          // Not applied (a member down, a dropped connection): read and commit again while the deadline allows.
          if (cancelled) throw new CoordinationUnavailable(`etcd: claim: the commit was not answered (${errorText(err)}); re-read: not claimed`, { cause: err });
          state = await this.by('claim: read the marks', deadline, () => this.read(c, deadline));
          continue;
        }
        if (r.succeeded) {
          this.hold(c, mine, value, leaseId);
          return { outcome: 'claimed' };
        }
        state = this.stateOf(r, c);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A commit without an answer may have been applied: re-read this claim's
   * own mark (within one more bound), never send it again. True: claimed.
   */
  private async settle(c: Claim, mine: Buffer, value: Buffer, leaseId: string, err: unknown): Promise<boolean> {
    const deadline = Date.now() + this.s.timeoutMs;
    let found;
    try {
      found = await this.by('claim: re-read after the commit', deadline, () => this.retrying(deadline, (o) => this.client.kv.range({ key: mine }, o)));
    } catch (again) {
      throw new CoordinationUnavailable(`etcd: claim: the commit was not answered (${errorText(err)}) and the re-read failed (${errorText(again)}); not known to be claimed, nothing was done`, { cause: err });
    }
    if (!found.kvs[0]?.value.equals(value)) return false;
    this.hold(c, mine, value, leaseId);
    return true;
  }

  /** Keeps the mark's lease alive while the power action runs (a failed keepalive is tried again next time). */
  private hold(c: Claim, key: Buffer, value: Buffer, leaseId: string): void {
    const every = Math.max(500, Math.floor(c.raceWindowMs / 3));
    const timer = setInterval(() => void this.keepAlive(leaseId, Date.now() + this.s.timeoutMs).catch(() => undefined), every);
    timer.unref();
    clearInterval(this.held.get(c.requestId)?.timer);
    this.held.set(c.requestId, { key, value, leaseId, timer });
  }

  async finish(c: Claim, end: FenceEnd): Promise<void> {
    const h = this.held.get(c.requestId);
    if (!h) return;
    clearInterval(h.timer);
    this.held.delete(c.requestId);
    // Untouched: the mark lapses with its lease, never deleted while another broker may act.
    if (end === 'untouched') return;
    const deadline = Date.now() + this.s.timeoutMs;
    await this.by('renew the race mark', deadline, async () => {
      if ((await this.keepAlive(h.leaseId, deadline)) > 0) return;
      // The lease lapsed (the store was out of reach longer than the window): mark again.
      const id = await this.grant(seconds(c.raceWindowMs), deadline);
      await this.retrying(deadline, (o) => this.client.kv.put({ key: h.key, value: h.value, lease: id }, o));
    });
  }

  async publish(info: HostInfo): Promise<void> {
    if (this.closed) return;
    await this.by('publish this host', Date.now() + this.s.timeoutMs, async () => {
      if (this.closed) return;
      if (!this.hostLease || this.hostLease.revoked()) {
        const lease = this.ns.lease(HOST_TTL_S);
        // Only its own loss clears it: a newer lease may have replaced it meanwhile.
        lease.on('lost', () => {
          if (this.hostLease === lease) this.hostLease = undefined;
        });
        this.hostLease = lease;
      }
      await this.hostLease.put(`hosts/${info.host_id}`).value(JSON.stringify(info)).exec();
    });
  }

  /** Every broker that published; an entry that cannot be read is left out, not the whole view. */
  async fleet(): Promise<HostInfo[]> {
    const deadline = Date.now() + this.s.timeoutMs;
    const all = await this.by('read the fleet', deadline, () => this.retrying(deadline, () => this.ns.getAll().prefix('hosts/').strings()));
    const hosts: HostInfo[] = [];
    for (const v of Object.values(all)) {
      try {
        const h = JSON.parse(v) as HostInfo;
        if (typeof h.host_id === 'string' && h.domains && typeof h.domains === 'object') hosts.push(h);
      } catch {
        // skipped: a half-written or foreign entry
      }
    }
    return hosts.sort((a, b) => a.host_id.localeCompare(b.host_id));
  }

  /**
   * Every race mark and storm count under the prefix, in one read (a
   * transaction of two ranges), for fencectl status. The whole fleet's, not
   * only this host's: that is what every broker decides on.
   */
  async snapshot(): Promise<CoordinationSnapshot> {
    const deadline = Date.now() + this.s.timeoutMs;
    const race = this.key('race/');
    const fences = this.key('fences/');
    const r = await this.by('read the marks', deadline, () =>
      this.retrying(deadline, (o) =>
        this.client.kv.txn({ compare: [], success: [{ request_range: { key: race, range_end: prefixEnd(race) } }, { request_range: { key: fences, range_end: prefixEnd(fences), keys_only: true } }], failure: [] }, o),
      ),
    );
    const [markKvs, fenceKvs] = r.responses.map((x) => x.response_range?.kvs ?? []);
    const marks: CoordinationSnapshot['marks'] = (markKvs ?? []).map((kv) => {
      // race/<domain>/<request id>@<host id>
      const target = kv.key.subarray(race.length).toString().split('/')[0] ?? '?';
      let v: Partial<MarkValue> = {};
      try {
        v = JSON.parse(kv.value.toString()) as MarkValue;
      } catch {
        // An unreadable mark still marks: shown with what its key says.
      }
      return { target, holder: v.holder ?? '?', ...(v.request_id ? { requestId: v.request_id } : {}), ...(v.host_id ? { hostId: v.host_id } : {}), ...(v.at ? { at: v.at } : {}) };
    });
    const byCluster = new Map<string, string[]>();
    for (const kv of fenceKvs ?? []) {
      const [cluster, domain] = kv.key.subarray(fences.length).toString().split('/');
      if (!cluster || !domain) continue;
      byCluster.set(cluster, [...(byCluster.get(cluster) ?? []), domain]);
    }
    return { marks: marks.sort((a, b) => a.target.localeCompare(b.target)), storms: [...byCluster].sort(([a], [b]) => a.localeCompare(b)).map(([cluster, domains]) => ({ cluster, domains: domains.sort() })) };
  }

  /** Leaves the fleet view at once if the store answers in time; its lease lapses otherwise. Never hangs. */
  async close(): Promise<void> {
    this.closed = true;
    for (const h of this.held.values()) clearInterval(h.timer);
    this.held.clear();
    const lease = this.hostLease;
    this.hostLease = undefined;
    if (lease) {
      await this.by('leave the fleet', Date.now() + this.s.timeoutMs, () => lease.revoke()).catch(() => undefined);
      lease.release();
    }
    this.client.close();
  }
}
