// The fence_virt door, transport-independent (TCP here in tcp.ts, multicast in
// multicast.ts, serial channels in serial.ts): it turns a fence_virtd request
// into the broker's one Broker.handle call. Identity is the node whose key
// verifies the request's hash, or for a channel the node whose domain the
// channel belongs to; nothing else in the packet names the requester. Every
// request leaves exactly one audit line naming its door: Broker.handle's for
// those that get that far, the door's own for those it ends (malformed, weak
// hash, no key verifies, replay, UUID flag, a failed challenge, a channel no
// node owns). Requests no key verifies
// cost bounded CPU: each source, and all sources together, get an allowance of
// them per window; beyond it a packet is dropped before any hashing and
// counted in one summary line per source and window.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { RefusalRecord } from '../../audit.js';
import type { Handled, RequestContext } from '../../broker.js';
import type { Identity } from '../../identity/index.js';
import { nameProblem } from '../../../common/names.js';
import { challengeResponse, findSigner, newChallenge, responseMatches, type StrongHash } from './auth.js';
import type { KeyEntry } from './keys.js';
import { HASH, HASH_FIELD, HASH_NAMES, MAX_DOMAIN_LENGTH, OP_NAMES, RESP, RF_UUID, WireError, decodeRequest, hostlistBody, type FenceVirtRequest } from './wire.js';
import { encodeSerialHostlist, encodeSerialResponse, type SerialRequest } from './serial-wire.js';

export interface Source {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

export interface Accepted {
  request: FenceVirtRequest;
  cluster: string;
  node: string;
  source: Source;
  transport: 'tcp' | 'multicast';
}

export interface FenceVirtDoorOptions {
  /** The current keys (swapped on reload: a key removed is revoked for the next packet). */
  keys: () => readonly KeyEntry[];
  handle: (who: Identity, peer: string, command: string, ctx: RequestContext) => Promise<Handled>;
  /** Whether this host's toolstack has the domain (a read of that domain alone); throws when it cannot say. */
  hostHas: (domain: string) => Promise<boolean>;
  /** One audit line for a request the door ends itself; never throws. */
  audit: (record: RefusalRecord) => void;
  /** Requests signed with a weaker hash are refused (sha256 or sha512; sha1 and none always are). */
  minHash: StrongHash;
  /** The challenge hash both ends use (the clients' -C; the packet does not say it). */
  challengeHash: StrongHash;
  /** From the start of serve() to the end of both challenges, ms. */
  exchangeTimeoutMs: number;
  /** Requests no key verifies (or malformed), per source per window; beyond: dropped unhashed. */
  unverifiedPerSource: number;
  /** ...and from all sources together. */
  unverifiedTotal: number;
  /** The replay history's and the allowance's window, ms (fence_virtd's history: 10 s). */
  windowMs: number;
  /**
   * The node a channel's domain belongs to (the serial door), from the current
   * config; `why` when none does (no node's domain, or two nodes name it).
   */
  channelOwner?: (domain: string) => ChannelNode | { why: string };
  log: Logger;
}

type NodeIdentity = Extract<Identity, { kind: 'node' }>;
/** A channel's owner: the node whose domain the channel belongs to. */
export interface ChannelNode {
  identity: NodeIdentity;
}

/** A request that came out of a domain's channel socket: the hypervisor proves the domain. */
export interface ChannelRequest {
  /** The socket path (from the domain's XML, inside the channels dir). */
  channel: string;
  /** The domain whose XML binds that socket: the identity. */
  domain: string;
  request: SerialRequest;
}

/** The door name of the serial channel door. */
export const SERIAL_DOOR = 'fence_virt/serial';
/** The peer a channel request's audit lines name. */
export const channelPeer = (domain: string): string => `channel:${domain}`;

/** The broker's verb for each fence_virt operation. */
const VERB: Record<string, string> = { null: 'gethosts', devstatus: 'gethosts', hostlist: 'list', off: 'off', reboot: 'reset', on: 'on', status: 'status' };
const TARGETED = new Set(['off', 'reboot', 'on', 'status']);

/** How long a source that sent an accepted request counts as proven (the total allowance spares it). */
export const PROVEN_MS = 15 * 60_000;

export const doorName = (transport: 'tcp' | 'multicast'): string => `fence_virt/${transport}`;
export const peerOf = (s: Source): string => (s.family === 'IPv6' ? `[${s.address}]:${s.port}` : `${s.address}:${s.port}`);

/** The stream ended before the bytes asked for: `bytes` is what came. */
export class ShortRead extends Error {
  override name = 'ShortRead';
  constructor(readonly bytes: Buffer, wanted: number) {
    super(`connection closed after ${bytes.length} of ${wanted} bytes`);
  }
}

/** Reads exactly `n` bytes from a paused stream; rejects (ShortRead) when it ends first, or when `signal` fires. */
export function readExactly(s: Duplex, n: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      s.off('readable', tryRead);
      s.off('end', ended);
      s.off('close', ended);
      s.off('error', failed);
      signal.removeEventListener('abort', aborted);
    };
    function tryRead(): void {
      const b = s.read(n) as Buffer | null;
      if (b === null) return;
      cleanup();
      if (b.length < n) reject(new ShortRead(b, n));
      else resolve(b);
    }
    function ended(): void {
      // Whatever is left in the buffer is less than n (read(n) returns it at the end).
      const rest = s.read() as Buffer | null;
      cleanup();
      reject(new ShortRead(rest ?? Buffer.alloc(0), n));
    }
    function failed(err: Error): void {
      cleanup();
      reject(new Error(`connection error: ${err.message}`, { cause: err }));
    }
    function aborted(): void {
      cleanup();
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    }
    if (signal.aborted) return aborted();
    s.on('readable', tryRead);
    s.once('end', ended);
    s.once('close', ended);
    s.once('error', failed);
    signal.addEventListener('abort', aborted, { once: true });
    tryRead();
  });
}

/** The one reply byte for a broker reply to `op`. */
export function replyByte(op: string, h: Handled): number {
  const r = h.reply;
  if (r.code === 'refused') return RESP.perm;
  if (!r.ok) return RESP.fail;
  if (op === 'status') return r.state === 'on' ? RESP.success : r.state === 'off' ? RESP.off : RESP.fail;
  return RESP.success;
}

// hostlistBody lives with the wire (the serial door writes it too); exported here as before.
export { hostlistBody } from './wire.js';

interface Allowance {
  windowStart: number;
  spent: number;
  /** Dropped unhashed this window: reported in one summary line. */
  over: number;
  /** Which transports the dropped packets came in by. */
  doors: Set<string>;
}

export class FenceVirtDoor {
  /**
   * The broker's challenges now awaiting an answer (hex). A client challenge equal to one is refused:
   * otherwise a replayer could hand the broker's challenge on one connection to the broker as its own
   * on another, and use the broker's answer to pass (a reflection; fence_virtd serves one at a time).
   */
  private readonly outstanding = new Set<string>();
  /** Replay history: node/op/seqno/domain → when accepted. */
  private readonly history = new Map<string, number>();
  private readonly allowances = new Map<string, Allowance>();
  /** Sources whose last accepted request was within PROVEN_MS: when. */
  private readonly proven = new Map<string, number>();
  /** Requests inside Broker.handle: revoke() aborts those whose key a reload took away. */
  private readonly running = new Set<{ fingerprint: string; cluster: string; node: string; gone: AbortController; conn: Duplex }>();
  /** Channel requests inside Broker.handle: revoke() aborts those whose domain a reload gave to no node or another. */
  private readonly runningChannels = new Set<{ domain: string; cluster: string; node: string; gone: AbortController }>();
  private total: Allowance;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: FenceVirtDoorOptions) {
    this.total = { windowStart: performance.now(), spent: 0, over: 0, doors: new Set() };
    // Summaries of packets dropped over the allowance go out once their window ends.
    this.timer = setInterval(() => this.sweep(performance.now()), Math.max(250, Math.floor(o.windowMs / 4)));
    this.timer.unref();
  }

  /**
   * Decodes and verifies a packet: the node whose key verifies it, or
   * undefined when the request is dropped (then already audited).
   */
  accept(packet: Buffer, source: Source, transport: 'tcp' | 'multicast'): Accepted | undefined {
    const now = performance.now();
    const door = doorName(transport);
    const peer = peerOf(source);
    const drop = (kind: string, fields: Record<string, unknown>): undefined => {
      this.o.audit({ event: 'refusal', kind, peer, door, ...fields });
      return undefined;
    };
    // Everything before a key verifies spends the source's allowance; an empty one means no hashing at all.
    if (!this.spend(source.address, door, now)) return undefined;
    let req: FenceVirtRequest;
    try {
      req = decodeRequest(packet);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      return drop('fence_virt_malformed', { why: err.message, bytes: packet.length });
    }
    const op = OP_NAMES[req.op];
    const hashName = HASH_NAMES[req.hashtype];
    const basics = { op: op ?? req.op, hash: hashName ?? req.hashtype, seqno: req.seqno, domain: printable(req.domain) };
    if (hashName !== 'sha256' && hashName !== 'sha512') {
      return drop('fence_virt_weak_hash', { ...basics, why: `request hash ${hashName ?? `type ${req.hashtype}`} refused; sha256 or sha512 required` });
    }
    if (req.hashtype < HASH[this.o.minHash]) {
      return drop('fence_virt_weak_hash', { ...basics, why: `request hash ${hashName} is below broker.fence_virt.hash (${this.o.minHash})` });
    }
    const signer = findSigner(req.raw, hashName, req.hash, this.o.keys());
    if (!signer) return drop('fence_virt_unverified', { ...basics, why: 'no key verifies the request hash' });
    const who = signer.identity;
    const named = { ...basics, cluster: who.cluster, node: who.node, fingerprint: who.fingerprint };
    if (req.flags & RF_UUID) return drop('fence_virt_uuid_refused', { ...named, why: 'UUID-flagged request refused: domains are named' });
    if (op === undefined || !(op in VERB)) return drop('fence_virt_unknown_op', { ...named, why: `operation ${req.op} is not served` });
    const key = this.historyKey(who.cluster, who.node, req);
    const seen = this.history.get(key);
    if (seen !== undefined && now - seen < this.o.windowMs) {
      return drop('fence_virt_replay', { ...named, why: `the same node, operation, seqno and domain were accepted ${Math.round(now - seen)} ms ago (window ${this.o.windowMs} ms)` });
    }
    this.history.set(key, now);
    // The allowance is refunded only when serve() sees the client answer the challenge: a replayed packet
    // verifies too, but proves nothing.
    return { request: req, cluster: who.cluster, node: who.node, source, transport };
  }

  /** Whether this host has the request's domain; requests without one (null, devstatus, hostlist) are every broker's. */
  async hasDomain(a: Accepted): Promise<boolean> {
    const op = OP_NAMES[a.request.op] ?? '';
    if (!TARGETED.has(op)) return true;
    if (nameProblem(a.request.domain)) return false;
    try {
      return await this.o.hostHas(a.request.domain);
    } catch (err) {
      this.o.log.warn({ err, domain: a.request.domain }, 'fence_virt: toolstack read failed; not answering');
      return false;
    }
  }

  /** A multicast callback failed: forget the request, so the client's retransmit (same seqno) is served. */
  release(a: Accepted): void {
    this.history.delete(this.historyKey(a.cluster, a.node, a.request));
  }

  /**
   * Runs both challenges over `conn` (a paused stream), then the one
   * Broker.handle call, then writes fence_virtd's reply and ends `conn`.
   */
  async serve(a: Accepted, conn: Duplex): Promise<void> {
    const door = doorName(a.transport);
    const peer = peerOf(a.source);
    const op = OP_NAMES[a.request.op] as string;
    const entry = this.o.keys().find((k) => k.identity.cluster === a.cluster && k.identity.node === a.node);
    const named = { peer, door, op, seqno: a.request.seqno, domain: printable(a.request.domain), cluster: a.cluster, node: a.node };
    if (!entry) {
      // Revoked by a reload between the packet and now.
      this.o.audit({ event: 'refusal', kind: 'fence_virt_key_revoked', ...named, why: 'the key was revoked before the request was served' });
      conn.destroy();
      return;
    }
    const key = entry.prepared.key;
    const hash = this.o.challengeHash;
    const deadline = AbortSignal.timeout(this.o.exchangeTimeoutMs);
    try {
      // The client proves nothing yet; the broker proves it holds the key first, as fence_virtd does.
      const theirs = await readExactly(conn, HASH_FIELD, deadline);
      if (this.outstanding.has(theirs.toString('hex'))) {
        this.spend(a.source.address, door, performance.now());
        this.o.audit({ event: 'refusal', kind: 'fence_virt_challenge_reflected', ...named, fingerprint: entry.identity.fingerprint, why: "the client's challenge is one the broker sent on another connection (a reflection attempt)" });
        conn.destroy();
        return;
      }
      conn.write(challengeResponse(key, hash, theirs));
      const ours = newChallenge();
      const tag = ours.toString('hex');
      this.outstanding.add(tag);
      let answer: Buffer;
      try {
        conn.write(ours);
        answer = await readExactly(conn, HASH_FIELD, deadline);
      } finally {
        this.outstanding.delete(tag);
      }
      if (!responseMatches(key, hash, ours, answer)) {
        this.spend(a.source.address, door, performance.now());
        this.o.audit({ event: 'refusal', kind: 'fence_virt_challenge_failed', ...named, fingerprint: entry.identity.fingerprint, why: `the client's answer to the broker's ${hash} challenge does not match the key (a replayed packet, or the client uses another -C)` });
        conn.destroy();
        return;
      }
      // Proven: this request no longer counts against its source, and the source is spared the total cap.
      this.refund(a.source.address);
    } catch (err) {
      this.o.audit({ event: 'refusal', kind: 'fence_virt_challenge_failed', ...named, fingerprint: entry.identity.fingerprint, why: `challenge exchange: ${(err as Error).message}` });
      conn.destroy();
      return;
    }
    // Revoked (or replaced) by a reload while the challenges ran: nothing is done for it.
    const still = this.o.keys().some((k) => k.identity.fingerprint === entry.identity.fingerprint && k.identity.cluster === a.cluster && k.identity.node === a.node);
    if (!still) {
      this.o.audit({ event: 'refusal', kind: 'fence_virt_key_revoked', ...named, why: 'the key was revoked before the request was served' });
      conn.destroy();
      return;
    }
    const gone = new AbortController();
    const onClose = () => gone.abort(new Error('requester closed the connection'));
    conn.once('close', onClose);
    const running = { fingerprint: entry.identity.fingerprint, cluster: a.cluster, node: a.node, gone, conn };
    this.running.add(running);
    const verb = VERB[op] as string;
    const command = TARGETED.has(op) ? `${verb} ${a.request.domain}` : verb;
    let handled: Handled;
    try {
      handled = await this.o.handle(entry.identity, peer, command, { gone: gone.signal, door });
    } catch (err) {
      this.o.log.error({ err, peer }, 'fence_virt request failed');
      conn.destroy();
      return;
    } finally {
      conn.off('close', onClose);
      this.running.delete(running);
    }
    if (conn.destroyed) return;
    const last = Buffer.from([replyByte(op, handled)]);
    conn.end(op === 'hostlist' && handled.reply.ok ? Buffer.concat([hostlistBody(handled.reply.domains ?? [], handled.reply.states), last]) : last);
  }

  /**
   * Serves a request that came out of a domain's channel: the hypervisor
   * proves the domain, so no key, hash or challenge is involved. The node is
   * the one whose domain it is. The same operations, replay window and
   * Broker.handle as the other transports. Returns fence_virtd's reply bytes
   * (magic + code; a hostlist before it), or undefined when none is owed (a
   * replay, as fence_virtd drops it). Every request
   * leaves one audit line: Broker.handle's or the door's.
   */
  async serveChannel(c: ChannelRequest, gone: AbortSignal): Promise<Buffer | undefined> {
    const req = c.request;
    const op = OP_NAMES[req.request];
    const peer = channelPeer(c.domain);
    const basics = { peer, door: SERIAL_DOOR, channel: c.channel, channel_domain: c.domain, op: op ?? req.request, seqno: req.seqno, domain: printable(req.domain) };
    const refuse = (kind: string, fields: Record<string, unknown>): Buffer => {
      this.o.audit({ event: 'refusal', kind, ...basics, ...fields });
      // Answered: the guest's fence_virt would otherwise wait out its timeout.
      return encodeSerialResponse(RESP.perm);
    };
    const owner = this.o.channelOwner?.(c.domain) ?? { why: 'no channel owners configured' };
    if (!('identity' in owner)) return refuse('fence_virt_channel_unowned', { why: `channel ${c.channel} belongs to domain ${c.domain}: ${owner.why}` });
    const who = owner.identity;
    const named = { ...basics, cluster: who.cluster, node: who.node };
    if (req.flags & RF_UUID) return refuse('fence_virt_uuid_refused', { ...named, why: 'UUID-flagged request refused: domains are named' });
    if (op === undefined || !(op in VERB)) return refuse('fence_virt_unknown_op', { ...named, why: `operation ${req.request} is not served` });
    const now = performance.now();
    // Keyed on the channel's domain, not the node: a reload that renames the node does not reopen the window.
    const key = JSON.stringify(['channel', c.domain, req.request, req.seqno, req.domain.toLowerCase()]);
    const seen = this.history.get(key);
    if (seen !== undefined && now - seen < this.o.windowMs) {
      this.o.audit({ event: 'refusal', kind: 'fence_virt_replay', ...named, why: `the same channel, operation, seqno and domain were served ${Math.round(now - seen)} ms ago (window ${this.o.windowMs} ms); dropped unanswered, as fence_virtd does` });
      return undefined;
    }
    this.history.set(key, now);
    const verb = VERB[op] as string;
    const command = TARGETED.has(op) ? `${verb} ${req.domain}` : verb;
    const abort = new AbortController();
    const onGone = () => abort.abort(gone.reason);
    if (gone.aborted) onGone();
    else gone.addEventListener('abort', onGone, { once: true });
    const running = { domain: c.domain, cluster: who.cluster, node: who.node, gone: abort };
    this.runningChannels.add(running);
    let handled: Handled;
    try {
      handled = await this.o.handle(who, peer, command, { gone: abort.signal, door: SERIAL_DOOR, channel: { path: c.channel, domain: c.domain } });
    } catch (err) {
      this.o.log.error({ err, peer, channel: c.channel }, 'fence_virt/serial request failed');
      // The guest hears a failure now rather than waiting out its timeout.
      return encodeSerialResponse(RESP.fail);
    } finally {
      gone.removeEventListener('abort', onGone);
      this.runningChannels.delete(running);
    }
    const code = replyByte(op, handled);
    if (op === 'hostlist' && handled.reply.ok) return encodeSerialHostlist(handled.reply.domains ?? [], handled.reply.states, code);
    return encodeSerialResponse(code);
  }

  /**
   * After a reload: aborts the requests in progress whose key is gone or now
   * another node's, and closes their connections, as the SSH door does; and
   * the channel requests whose domain no longer belongs to the same node.
   * Returns how many.
   */
  revoke(): number {
    const keys = this.o.keys();
    let closed = 0;
    for (const r of this.runningChannels) {
      const owner = this.o.channelOwner?.(r.domain);
      if (owner && 'identity' in owner && owner.identity.cluster === r.cluster && owner.identity.node === r.node) continue;
      r.gone.abort(new Error('the channel\'s domain no longer belongs to the node (reload)'));
      this.runningChannels.delete(r);
      closed++;
    }
    for (const r of this.running) {
      if (keys.some((k) => k.identity.fingerprint === r.fingerprint && k.identity.cluster === r.cluster && k.identity.node === r.node)) continue;
      r.gone.abort(new Error('key revoked by a reload'));
      r.conn.destroy();
      this.running.delete(r);
      closed++;
    }
    return closed;
  }

  /** Stops the summary timer; writes what is pending. */
  close(): void {
    clearInterval(this.timer);
    this.sweep(Number.POSITIVE_INFINITY);
  }

  private historyKey(cluster: string, node: string, req: FenceVirtRequest): string {
    return JSON.stringify([cluster, node, req.op, req.seqno, req.domain.toLowerCase()]);
  }

  /** Takes one unit of the source's (and the total) allowance; false: none left, counted for the summary. */
  private spend(address: string, door: string, now: number): boolean {
    let a = this.allowances.get(address);
    if (!a) {
      a = { windowStart: now, spent: 0, over: 0, doors: new Set() };
      this.allowances.set(address, a);
    }
    // The total cap spares sources that proved a key lately (Pacemaker's monitor does every minute or so):
    // a flood from many addresses then still cannot keep a node from fencing.
    const proven = (this.proven.get(address) ?? Number.NEGATIVE_INFINITY) > now - PROVEN_MS;
    if (a.spent >= this.o.unverifiedPerSource || (this.total.spent >= this.o.unverifiedTotal && !proven)) {
      a.over++;
      a.doors.add(door);
      return false;
    }
    a.spent++;
    this.total.spent++;
    return true;
  }

  private refund(address: string): void {
    this.proven.set(address, performance.now());
    const a = this.allowances.get(address);
    if (a && a.spent > 0) a.spent--;
    if (this.total.spent > 0) this.total.spent--;
  }

  /** Ends windows that are over: writes their summaries, forgets idle sources and old history. */
  private sweep(now: number): void {
    const w = this.o.windowMs;
    for (const [address, a] of this.allowances) {
      if (now - a.windowStart < w) continue;
      if (a.over > 0) {
        this.o.audit({
          event: 'refusal', kind: 'fence_virt_over_allowance', peer: address, door: [...a.doors].join(','), dropped: a.over,
          why: `${a.over} packets dropped unread: the source had spent its allowance of ${this.o.unverifiedPerSource} unverified requests per ${w} ms (or all sources theirs of ${this.o.unverifiedTotal})`,
        });
      }
      this.allowances.delete(address);
    }
    if (now - this.total.windowStart >= w) this.total = { windowStart: Number.isFinite(now) ? now : performance.now(), spent: 0, over: 0, doors: new Set() };
    for (const [k, at] of this.history) if (now - at >= w) this.history.delete(k);
    for (const [address, at] of this.proven) if (now - at >= PROVEN_MS) this.proven.delete(address);
  }
}

/** A domain field for the audit: printable ASCII, bounded. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_DOMAIN_LENGTH);
}
