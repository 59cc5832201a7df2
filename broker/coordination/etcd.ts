// A fleet: the fence race and the storm count in etcd (the etcd3 client), so
// that every broker judges a race the same way. One transaction per claim:
// the requester's own domain carries no mark of another node, and neither
// mark changed since it was read; then the target is marked for the requester
// with a lease of the race window (the same request at another broker finds
// its own mark; another node fencing the same target takes the mark over, and
// the target stays marked). A mark is never deleted early: a broker that finds the
// target is not on its host says so, while another may be fencing it.
// Every call is bounded (coordination.timeout); past it, or on any store
// error, the answer is CoordinationUnavailable.
import { readFileSync } from 'node:fs';
import { Etcd3, type Namespace } from 'etcd3';
import { CoordinationUnavailable, holderOf, type Claim, type ClaimOutcome, type Coordination, type HostInfo, type RaceFacts } from './coordination.js';

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

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));
/** How long a published host entry outlives its broker. */
const HOST_TTL_S = 10;

export class EtcdCoordination implements Coordination {
  readonly describe: string;
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private hostLease: ReturnType<Etcd3['lease']> | undefined;
  private closed = false;

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
      // Each call gets the whole bound; the client's own retries (another member) happen within it.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + s.timeoutMs }),
      ...creds,
    });
    this.ns = this.client.namespace(s.prefix.endsWith('/') ? s.prefix : `${s.prefix}/`);
  }

  /** `p` within the bound, or CoordinationUnavailable saying which step. */
  private async bounded<T>(step: string, p: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new CoordinationUnavailable(`etcd: ${step}: no answer within ${this.s.timeoutMs} ms`)), this.s.timeoutMs);
        }),
      ]);
    } catch (err) {
      if (err instanceof CoordinationUnavailable) throw err;
      throw new CoordinationUnavailable(`etcd: ${step}: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  private markKey = (domain: string) => `race/${domain}`;
  private fenceKeys = (cluster: string) => `fences/${cluster}/`;

  private static parse(raw: string | null): MarkValue | undefined {
    if (raw === null) return undefined;
    try {
      return JSON.parse(raw) as MarkValue;
    } catch {
      // An unreadable mark still marks: treat it as someone else's.
      return { holder: '?', request_id: '', host_id: '', at: '' };
    }
  }

  async facts(q: { cluster: string; requesterDomain: string; node: string; stormWindowMs?: number }): Promise<RaceFacts> {
    return this.bounded('read race facts', async () => {
      const own = EtcdCoordination.parse(await this.ns.get(this.markKey(q.requesterDomain)).string());
      const recentFences = q.stormWindowMs === undefined ? 0 : await this.ns.getAll().prefix(this.fenceKeys(q.cluster)).count();
      return { requesterFenced: own !== undefined && own.holder !== holderOf(q), recentFences };
    });
  }

  async claim(c: Claim): Promise<ClaimOutcome> {
    const holder = holderOf(c);
    const value = JSON.stringify({ holder, request_id: c.requestId, host_id: this.s.hostId, at: new Date().toISOString() } satisfies MarkValue);
    return this.bounded('claim', async () => {
      // Optimistic: read both marks, then commit only if neither changed meanwhile.
      for (let attempt = 0; attempt < 8; attempt++) {
        const ownKey = this.markKey(c.requesterDomain);
        const targetKey = this.markKey(c.target);
        const ownRaw = await this.ns.get(ownKey).string();
        const own = EtcdCoordination.parse(ownRaw);
        if (own && own.holder !== holder) return { outcome: 'lost' } as const;
        const targetRaw = ownKey === targetKey ? ownRaw : await this.ns.get(targetKey).string();
        const raceLease = this.client.lease(seconds(c.raceWindowMs), { autoKeepAlive: false });
        const leaseId = await raceLease.grant();
        const txn = this.ns.if(ownKey, ownRaw === null ? 'Version' : 'Value', '==', ownRaw === null ? 0 : ownRaw);
        if (targetKey !== ownKey) txn.and(targetKey, targetRaw === null ? 'Version' : 'Value', '==', targetRaw === null ? 0 : targetRaw);
        const ops = [this.ns.put(targetKey).value(value).lease(leaseId)];
        let stormLease: ReturnType<Etcd3['lease']> | undefined;
        if (c.stormWindowMs !== undefined) {
          stormLease = this.client.lease(seconds(c.stormWindowMs), { autoKeepAlive: false });
          ops.push(this.ns.put(`${this.fenceKeys(c.cluster)}${c.target}`).value(c.requestId).lease(await stormLease.grant()));
        }
        const r = await txn.then(...ops).commit();
        if (r.succeeded) return { outcome: 'claimed' } as const;
        await raceLease.revoke().catch(() => undefined);
        await stormLease?.revoke().catch(() => undefined);
      }
      throw new CoordinationUnavailable('etcd: claim: the marks kept changing; gave up after 8 attempts');
    });
  }

  async finish(c: Claim, fenced: boolean): Promise<void> {
    // Only a confirmed fence renews the mark (the window then runs from now);
    // otherwise it lapses with its lease, never deleted while another broker may act.
    if (!fenced) return;
    await this.bounded('renew the race mark', async () => {
      const key = this.markKey(c.target);
      const raw = await this.ns.get(key).string();
      const mark = EtcdCoordination.parse(raw);
      if (!raw || mark?.holder !== holderOf(c)) return;
      const lease = this.client.lease(seconds(c.raceWindowMs), { autoKeepAlive: false });
      const id = await lease.grant();
      await this.ns.if(key, 'Value', '==', raw).then(this.ns.put(key).value(raw).lease(id)).commit();
    });
  }

  async publish(info: HostInfo): Promise<void> {
    if (this.closed) return;
    await this.bounded('publish this host', async () => {
      if (this.closed) return;
      if (!this.hostLease || this.hostLease.revoked()) {
        this.hostLease = this.ns.lease(HOST_TTL_S);
        this.hostLease.on('lost', () => (this.hostLease = undefined));
      }
      await this.hostLease.put(`hosts/${info.host_id}`).value(JSON.stringify(info)).exec();
    });
  }

  async fleet(): Promise<HostInfo[]> {
    return this.bounded('read the fleet', async () => {
      const all = await this.ns.getAll().prefix('hosts/').strings();
      return Object.values(all).map((v) => JSON.parse(v) as HostInfo).sort((a, b) => a.host_id.localeCompare(b.host_id));
    });
  }

  /** Leaves the fleet view at once if the store answers in time; its lease lapses otherwise. Never hangs. */
  async close(): Promise<void> {
    this.closed = true;
    const lease = this.hostLease;
    this.hostLease = undefined;
    if (lease) {
      await this.bounded('leave the fleet', () => lease.revoke()).catch(() => undefined);
      lease.release();
    }
    this.client.close();
  }
}
