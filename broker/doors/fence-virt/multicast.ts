// The fence_virt door's multicast transport: what the stock fence_xvm speaks
// (DESIGN.md §6; issue 19). fence_xvm multicasts a signed request to a group
// (225.0.0.12 or ff05::3:1, port 1229 by default) and waits for a daemon to
// connect back to it; both challenges then run over that connection. Here a
// datagram goes to door.accept() (decode, hash strength, which node's key
// verifies it, replays), and only an accepted request whose domain this host
// has is answered: with several brokers in earshot the client takes the first
// connection back and never compares answers, so a broker without the domain
// keeps quiet rather than say anything about it.
//
// The callback goes to the address the datagram came from, never to one the
// packet names: a packet whose address field differs from its source is
// refused (a captured request re-sent from elsewhere, or a packet aimed at
// making the broker connect to a third party). Callbacks are bounded: beyond
// the bound a request is refused at once and released, so the client's
// retransmit (same seqno, new random) can be served later.
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { connect, isIPv4, isIPv6, SocketAddress, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import type { RefusalRecord } from '../../audit.js';
import { doorName, peerOf, type Accepted, type FenceVirtDoor, type Source } from './door.js';
import { FAMILY, OP_NAMES } from './wire.js';

/** fence_xvm's defaults (its -a and -p). */
export const DEFAULT_GROUPS = ['225.0.0.12', 'ff05::3:1'] as const;
export const DEFAULT_PORT = 1229;

export interface MulticastOptions {
  door: FenceVirtDoor;
  /** Multicast groups to join, IPv4 and/or IPv6. */
  groups: readonly string[];
  /** The UDP port (0: any, for tests; the clients' -p must then be told). */
  port: number;
  /** The interface to join the groups on, by name; default: the one the kernel routes the group to. */
  interface?: string | undefined;
  /** Callbacks (connect back, both challenges, the request) running at once; beyond: refused and released. */
  maxCallbacks: number;
  /** Connecting back to the client, ms. */
  connectTimeoutMs: number;
  /**
   * Whether the requester's cluster may see the request's domain: the domains
   * the policy lists for it (as `list` does). A broker keeps quiet about any
   * other domain, so another tenant's domain and one that does not exist meet
   * the same silence (DESIGN.md §3.4).
   */
  visible: (a: Accepted) => boolean;
  /** One audit line for a request this transport ends itself; never throws. */
  audit: (record: RefusalRecord) => void;
  log: Logger;
}

export interface MulticastDoor {
  /** The UDP port bound (the configured one, or the kernel's choice for 0). */
  port: number;
  /** The groups joined. */
  groups: readonly string[];
  /** Callbacks in progress, for tests and diagnostics. */
  callbacks(): number;
  /** Stops listening and drops the callbacks in progress (their clients retransmit elsewhere or time out). */
  close(): Promise<void>;
}

const DOOR = doorName('multicast');
/** Operations on one domain: only the host that has it (and whose policy lets the caller see it) answers them. */
const TARGETED = new Set(['off', 'reboot', 'on', 'status']);

/** The address a packet names for its callback, as text, or why it cannot be read. */
export function packetAddress(r: Accepted['request']): { family: 'IPv4' | 'IPv6'; address: string } | string {
  if (r.family === FAMILY.ipv4 && r.address.length === 4) return { family: 'IPv4', address: [...r.address].join('.') };
  if (r.family === FAMILY.ipv6 && r.address.length === 16) {
    const groups = Array.from({ length: 8 }, (_, i) => r.address.readUInt16BE(2 * i).toString(16));
    return { family: 'IPv6', address: new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address };
  }
  return `family ${r.family} with a ${r.address.length}-byte address`;
}

/** Why the packet's callback address is not the datagram's source, or undefined when they are the same. */
export function callbackProblem(r: Accepted['request'], source: Source): string | undefined {
  const named = packetAddress(r);
  if (typeof named === 'string') return `the packet names no usable callback address (${named})`;
  const from = source.family === 'IPv6' ? new SocketAddress({ address: source.address, family: 'ipv6' }).address : source.address;
  if (named.family !== source.family || named.address !== from) {
    return `the packet asks for a callback to ${named.address}, but came from ${from}; the broker connects back only to the sender`;
  }
  return undefined;
}

/** What IP_ADD_MEMBERSHIP takes for `iface`: its IPv4 address, or `::%NAME` for IPv6. */
function membershipInterface(group: string, iface: string | undefined): string | undefined {
  if (iface === undefined) return undefined;
  if (isIPv6(group)) return `::%${iface}`;
  const addr = networkInterfaces()[iface]?.find((a) => a.family === 'IPv4');
  if (!addr) throw new Error(`fence_virt multicast: interface ${iface} has no IPv4 address to join ${group} on`);
  return addr.address;
}

async function bindGroup(group: string, port: number, iface: string | undefined): Promise<UdpSocket> {
  const v6 = isIPv6(group);
  if (!v6 && !isIPv4(group)) throw new Error(`fence_virt multicast: ${group} is not an IP address`);
  // reuseAddr: several brokers (or fence_virtd beside one) may hear the same group on one host.
  const sock = createSocket(v6 ? { type: 'udp6', reuseAddr: true, ipv6Only: true } : { type: 'udp4', reuseAddr: true });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      // Bound to the group itself: unicast datagrams to the port are not ours to read.
      sock.bind({ port, address: group, exclusive: false }, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    sock.addMembership(group, membershipInterface(group, iface));
  } catch (err) {
    sock.close();
    throw new Error(`fence_virt multicast: cannot listen on ${v6 ? `[${group}]` : group}:${port}${iface ? ` on ${iface}` : ''}: ${(err as Error).message}`, { cause: err });
  }
  return sock;
}

/** Connects to `source.address`, port `port`; rejects after `timeoutMs`. */
function connectBack(source: Source, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: source.address, port, family: source.family === 'IPv6' ? 6 : 4, noDelay: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', failed);
      resolve(sock);
    });
    function failed(err: Error): void {
      clearTimeout(timer);
      reject(err);
    }
    sock.once('error', failed);
  });
}

export async function startMulticastDoor(o: MulticastOptions): Promise<MulticastDoor> {
  if (o.groups.length === 0) throw new Error('fence_virt multicast: no group to join');
  const sockets: UdpSocket[] = [];
  const live = new Set<Socket>();
  let active = 0;
  let closed = false;

  const refuse = (a: Accepted, kind: string, why: string, extra: Record<string, unknown> = {}): void => {
    o.audit({
      event: 'refusal', kind, peer: peerOf(a.source), door: DOOR,
      op: OP_NAMES[a.request.op] ?? a.request.op, seqno: a.request.seqno, domain: a.request.domain.slice(0, 64),
      cluster: a.cluster, node: a.node, why, ...extra,
    });
  };

  async function callback(a: Accepted): Promise<void> {
    let visible = true;
    if (TARGETED.has(OP_NAMES[a.request.op] ?? '')) {
      try {
        visible = o.visible(a);
      } catch (err) {
        // No decision is a deny (DESIGN.md §3.2): keep quiet.
        o.log.error({ err }, 'fence_virt multicast: the policy\'s list failed; not answering');
        visible = false;
      }
    }
    if (!visible) {
      refuse(a, 'fence_virt_not_visible', 'the node\'s cluster may not act on that domain (the policy\'s list); not answering, as for a domain no host has');
      o.door.release(a);
      return;
    }
    if (!(await o.door.hasDomain(a))) {
      // Another host's broker may have it; a retransmit is looked at afresh (the domain may arrive by migration).
      refuse(a, 'fence_virt_not_here', 'this host does not have the domain; not answering (another host\'s broker may)');
      o.door.release(a);
      return;
    }
    if (closed) return void o.door.release(a);
    let sock: Socket;
    try {
      sock = await connectBack(a.source, a.request.port, o.connectTimeoutMs);
    } catch (err) {
      refuse(a, 'fence_virt_callback_failed', `connecting back to ${peerOf({ ...a.source, port: a.request.port })}: ${(err as Error).message}`);
      o.door.release(a);
      return;
    }
    live.add(sock);
    // serve() listens for errors only while it reads; a reset after it ends must not go unheard.
    sock.on('error', (err) => o.log.debug({ err, peer: peerOf(a.source) }, 'fence_virt multicast callback: socket error'));
    sock.once('close', () => live.delete(sock));
    if (closed) {
      sock.destroy();
      o.door.release(a);
      return;
    }
    await o.door.serve(a, sock);
  }

  function onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    if (closed) return;
    const source: Source = { address: rinfo.address.replace(/%.*$/, ''), port: rinfo.port, family: rinfo.family === 'IPv6' ? 'IPv6' : 'IPv4' };
    const a = o.door.accept(msg, source, 'multicast');
    if (!a) return;
    const problem = callbackProblem(a.request, source);
    if (problem) {
      refuse(a, 'fence_virt_callback_address', problem);
      // Not a request of this node from where it is: it must not block the real one (same seqno) as a replay.
      o.door.release(a);
      return;
    }
    if (active >= o.maxCallbacks) {
      refuse(a, 'fence_virt_busy', `${active} callbacks in progress (broker.fence_virt.multicast.max_callbacks); the client's retransmit may be served`);
      o.door.release(a);
      return;
    }
    active++;
    // A link-local source needs its scope to be reached again.
    const withScope: Accepted = rinfo.address.includes('%') ? { ...a, source: { ...a.source, address: rinfo.address } } : a;
    callback(withScope)
      .catch((err: unknown) => o.log.error({ err, peer: peerOf(a.source) }, 'fence_virt multicast callback failed'))
      .finally(() => active--);
  }

  try {
    for (const group of o.groups) {
      const sock = await bindGroup(group, sockets[0] ? (sockets[0].address().port) : o.port, o.interface);
      sock.on('message', onMessage);
      sock.on('error', (err) => o.log.error({ err, group }, 'fence_virt multicast socket error'));
      sockets.push(sock);
    }
  } catch (err) {
    for (const s of sockets) s.close();
    throw err;
  }
  const port = (sockets[0] as UdpSocket).address().port;
  o.log.info({ groups: o.groups, port, interface: o.interface }, 'fence_virt multicast listening');
  return {
    port,
    groups: o.groups,
    callbacks: () => active,
    close: async () => {
      closed = true;
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      for (const s of live) s.destroy();
    },
  };
}
