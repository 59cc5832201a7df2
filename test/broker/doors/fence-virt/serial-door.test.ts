// The serial channel door end to end inside one process: the guest's bytes on
// a TEST DOUBLE of QEMU's chardev socket (test/chardev-double.ts), the
// broker's channel transport (serial.ts), the door's entry for a
// channel-proven identity (door.ts serveChannel), and the real Broker.handle
// with the real policy bundle and the simulated toolstack. The identity is the
// node whose domain the channel belongs to; the request never names it.
// Against real QEMU and a real guest: test/cluster/serial-guest.test.ts.
import test from 'ava';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import type { Audit, AuditRecord, IntentRecord, RefusalRecord } from '../../../../broker/audit.js';
import { Broker } from '../../../../broker/broker.js';
import { LocalCoordination } from '../../../../broker/coordination/local.js';
import { parseConfig } from '../../../../broker/config/load.js';
import type { Config } from '../../../../broker/config/types.js';
import { FenceVirtDoor } from '../../../../broker/doors/fence-virt/door.js';
import { channelOwner } from '../../../../broker/doors/fence-virt/index.js';
import { SerialChannels } from '../../../../broker/doors/fence-virt/serial.js';
import { encodeSerialRequest } from '../../../../broker/doors/fence-virt/serial-wire.js';
import { HOST_STATE, OP, RESP, RF_UUID } from '../../../../broker/doors/fence-virt/wire.js';
import { Fencer } from '../../../../broker/fencer.js';
import { DEFAULT_BUNDLE, readBundle } from '../../../../broker/policy/bundle.js';
import { policyData } from '../../../../broker/policy/data.js';
import { PolicyEngine } from '../../../../broker/policy/engine.js';
import { SimToolstack } from '../../../../broker/toolstack/sim.js';
import { ChardevDouble } from '../../../chardev-double.js';
import { newPublicKey, tempDir, until } from '../../../helpers.js';

type Line = AuditRecord | IntentRecord | RefusalRecord;

async function setup() {
  const dir = tempDir('fb-serial-door-');
  const chdir = join(dir, 'channels');
  mkdirSync(chdir, { mode: 0o700 });
  let config: Config = parseConfig(
    [
      'broker:', '  listen: 127.0.0.1:0', '  host_key: k', '  toolstack: { type: sim, state: sim.json }', '  audit_log: a.jsonl',
      'clusters:',
      '  blue:', '    domains: [blue-1, blue-2]', `    nodes: { blue-1: { key: "${newPublicKey()}" }, blue-2: { key: "${newPublicKey()}" } }`,
      '  red:', '    domains: [red-1]', `    nodes: { red-1: { key: "${newPublicKey()}" } }`,
      '',
    ].join('\n'),
    join(dir, 'clusters.yaml'),
  );
  const engine = await PolicyEngine.load(await readBundle(DEFAULT_BUNDLE), policyData(config));
  const toolstack = new SimToolstack(join(dir, 'sim.json'), ['blue-1', 'blue-2', 'red-1', 'stray-1']);
  const lines: Line[] = [];
  const audit: Audit = {
    intent: (r) => void lines.push(r),
    write: (r) => void lines.push(r),
    refusal: (r) => void lines.push(r),
    refusedRequest: (r) => void lines.push(r),
    event: () => undefined,
    reopen: () => undefined,
    close: () => undefined,
  };
  const broker = new Broker({ policy: () => engine, fencer: new Fencer(toolstack), audit, coordination: new LocalCoordination(), raceWindowMs: 60_000, requestTimeoutMs: 40_000, maxQueuePerIdentity: 32 });
  const log = pino({ level: 'silent' });
  const door = new FenceVirtDoor({
    keys: () => [],
    handle: (who, peer, command, ctx) => broker.handle(who, peer, command, ctx),
    hostHas: () => Promise.resolve(true),
    audit: (r) => audit.refusedRequest(r),
    minHash: 'sha256',
    challengeHash: 'sha256',
    exchangeTimeoutMs: 5_000,
    unverifiedPerSource: 20,
    unverifiedTotal: 500,
    windowMs: 10_000,
    channelOwner: (domain) => channelOwner(config, domain),
    log,
  });
  const channels = new SerialChannels({ serve: (c, gone) => door.serveChannel(c, gone), dir: chdir, readTimeoutMs: 2_000, requestsPerSecond: 50, burst: 50, audit: (r) => audit.refusedRequest(r), log });
  const guests: Record<string, ChardevDouble> = {};
  for (const d of ['blue-1', 'blue-2', 'red-1', 'stray-1']) {
    guests[d] = await ChardevDouble.listen(join(chdir, `${d}.sock`));
    channels.add(d, join(chdir, `${d}.sock`));
  }
  for (const g of Object.values(guests)) await g.connected();
  let seq = 1000;
  /** The guest of `domain` runs fence_virt -D: one request, one reply. */
  const ask = async (domain: string, op: number, target = '', o: { flags?: number; seqno?: number } = {}) => {
    const g = guests[domain] as ChardevDouble;
    g.write(encodeSerialRequest({ request: op, flags: o.flags ?? 0, domain: target, seqno: o.seqno ?? ++seq }));
    return g.reply();
  };
  return {
    dir, chdir, lines, toolstack, channels, door, guests, ask,
    setConfig: (c: Config) => {
      config = c;
    },
    close: async () => {
      channels.close();
      door.close();
      for (const g of Object.values(guests)) await g.close();
    },
  };
}

test('a guest fences its peer through its channel: the channel proves the node; the audit names channel and domain', async (t) => {
  const s = await setup();
  t.teardown(s.close);
  t.deepEqual(await s.ask('blue-1', OP.status, 'blue-2'), { code: RESP.success, bytes: 5 }, 'blue-2 is on');
  t.deepEqual(await s.ask('blue-1', OP.off, 'blue-2'), { code: RESP.success, bytes: 5 });
  t.is((await s.toolstack.state('blue-2')).observed, 'stopped');
  t.deepEqual(await s.ask('blue-1', OP.status, 'blue-2'), { code: RESP.off, bytes: 5 }, 'status says off once off');
  const offLine = s.lines.find((l) => l.event === 'request' && (l as AuditRecord).action === 'off') as AuditRecord;
  t.like(offLine, {
    door: 'fence_virt/serial', peer: 'channel:blue-1', fingerprint: 'channel:blue-1', channel: join(s.chdir, 'blue-1.sock'), channel_domain: 'blue-1',
    cluster: 'blue', node: 'blue-1', target: 'blue-2', decision: 'allow',
  });
  const intent = s.lines.find((l) => l.event === 'intent') as IntentRecord;
  t.like(intent, { door: 'fence_virt/serial', channel: join(s.chdir, 'blue-1.sock'), channel_domain: 'blue-1', target: 'blue-2' });
  t.is(s.lines.filter((l) => l.event === 'request').length, 3, 'one line per request');
});

test("hostlist: magic+253, the caller's cluster's domains only, the zero record, magic+code", async (t) => {
  const s = await setup();
  t.teardown(s.close);
  const r = await s.ask('blue-2', OP.hostlist);
  t.is(r.code, RESP.hostlist);
  t.deepEqual(r.hosts?.map((h) => h.domain).sort(), ['blue-1', 'blue-2']);
  t.true(r.hosts?.every((h) => h.state === HOST_STATE.on));
  t.is(r.final, RESP.success);
});

test("another tenant's guest is refused (the policy), and a domain no node owns gets RESP_PERM and its own refusal", async (t) => {
  const s = await setup();
  t.teardown(s.close);
  t.deepEqual(await s.ask('red-1', OP.off, 'blue-2'), { code: RESP.perm, bytes: 5 });
  t.is((await s.toolstack.state('blue-2')).observed, 'running');
  t.like(s.lines.find((l) => l.event === 'request'), { door: 'fence_virt/serial', cluster: 'red', node: 'red-1', channel_domain: 'red-1', decision: 'deny' });
  t.deepEqual(await s.ask('stray-1', OP.off, 'blue-2'), { code: RESP.perm, bytes: 5 });
  const refusal = s.lines.find((l) => l.event === 'refusal') as RefusalRecord;
  t.like(refusal, { kind: 'fence_virt_channel_unowned', door: 'fence_virt/serial', peer: 'channel:stray-1', channel: join(s.chdir, 'stray-1.sock'), channel_domain: 'stray-1', op: 'off', domain: 'blue-2' });
  t.regex(String(refusal.why), /stray-1\.sock belongs to domain stray-1: no node of clusters\.yaml has this domain/);
  t.is(s.lines.filter((l) => l.event === 'request').length, 1, 'the unowned request never reached the broker');
  t.is((await s.toolstack.state('blue-2')).observed, 'running');
});

test('a repeat of the same request within 10 s is dropped unanswered and audited; UUID flags and unknown operations are refused', async (t) => {
  const s = await setup();
  t.teardown(s.close);
  t.deepEqual(await s.ask('blue-1', OP.status, 'blue-2', { seqno: 77 }), { code: RESP.success, bytes: 5 });
  const g = s.guests['blue-1'] as ChardevDouble;
  g.write(encodeSerialRequest({ request: OP.status, flags: 0, domain: 'blue-2', seqno: 77 }));
  await until('the replay refusal', () => s.lines.some((l) => l.event === 'refusal' && (l as RefusalRecord).kind === 'fence_virt_replay'));
  // The next request's answer is the first thing on the line: the replay got none.
  t.deepEqual(await s.ask('blue-1', OP.status, 'blue-2', { seqno: 78 }), { code: RESP.success, bytes: 5 });
  t.like(s.lines.find((l) => (l as RefusalRecord).kind === 'fence_virt_replay'), { channel_domain: 'blue-1', seqno: 77, cluster: 'blue', node: 'blue-1' });
  // Another channel with the same seqno is another request.
  t.deepEqual(await s.ask('blue-2', OP.status, 'blue-2', { seqno: 77 }), { code: RESP.success, bytes: 5 });
  t.deepEqual(await s.ask('blue-1', OP.off, 'blue-2', { flags: RF_UUID }), { code: RESP.perm, bytes: 5 });
  t.deepEqual(await s.ask('blue-1', 9, 'blue-2'), { code: RESP.perm, bytes: 5 });
  t.deepEqual(s.lines.filter((l) => l.event === 'refusal').map((l) => (l as RefusalRecord).kind), ['fence_virt_replay', 'fence_virt_uuid_refused', 'fence_virt_unknown_op']);
  t.is((await s.toolstack.state('blue-2')).observed, 'running');
});

test('a reload that gives the domain to no node: its next request is refused as unowned', async (t) => {
  const s = await setup();
  t.teardown(s.close);
  t.deepEqual(await s.ask('blue-1', OP.status, 'blue-2'), { code: RESP.success, bytes: 5 });
  s.setConfig(parseConfig(
    ['broker:', '  listen: 127.0.0.1:0', '  host_key: k', '  toolstack: { type: sim, state: sim.json }', '  audit_log: a.jsonl', 'clusters:', '  blue:', '    domains: [blue-1, blue-2]', `    nodes: { blue-2: { key: "${newPublicKey()}" } }`, ''].join('\n'),
    join(s.dir, 'clusters.yaml'),
  ));
  t.is(s.door.revoke(), 0, 'nothing was in progress');
  t.deepEqual(await s.ask('blue-1', OP.status, 'blue-2'), { code: RESP.perm, bytes: 5 });
  t.like(s.lines.at(-1), { kind: 'fence_virt_channel_unowned', channel_domain: 'blue-1' });
});

test('channelOwner: the one node whose domain it is; none, or two, is no owner', (t) => {
  const node = (name: string, domain: string) => ({ name, domain, key: { text: '', blob: '', fingerprint: '' } as never });
  const clusters = {
    blue: { name: 'blue', domains: ['b-1', 'b-2'], nodes: { 'blue-1': node('blue-1', 'b-1'), 'blue-2': node('blue-2', 'b-2'), 'blue-3': node('blue-3', 'b-2') }, actions: [], allowSelfOff: false },
  };
  t.deepEqual(channelOwner({ clusters }, 'b-1'), { identity: { kind: 'node', cluster: 'blue', node: 'blue-1', domain: 'b-1', fingerprint: 'channel:b-1' } });
  t.deepEqual(channelOwner({ clusters }, 'x-1'), { why: 'no node of clusters.yaml has this domain' });
  t.deepEqual(channelOwner({ clusters }, 'b-2'), { why: '2 nodes name this domain (blue/blue-2, blue/blue-3); the channel proves none of them' });
});

test('a reload that takes the domain from its node aborts that channel request in progress; others run on', async (t) => {
  let owners: Record<string, string> = { 'blue-1': 'blue-1', 'red-1': 'red-1' };
  const started: string[] = [];
  const door = new FenceVirtDoor({
    keys: () => [],
    // A broker stand-in whose requests run until their client is gone.
    handle: (who, _peer, _command, ctx) =>
      new Promise((resolve) => {
        started.push(who.kind === 'node' ? who.node : '?');
        ctx.gone?.addEventListener('abort', () => resolve({ reply: { ok: false, action: 'off', target: 'x', state: 'unknown', message: 'gone', code: 'failed', request_id: 'r' }, exitCode: 1 }));
      }),
    hostHas: () => Promise.resolve(true),
    audit: () => undefined,
    minHash: 'sha256',
    challengeHash: 'sha256',
    exchangeTimeoutMs: 5_000,
    unverifiedPerSource: 20,
    unverifiedTotal: 500,
    windowMs: 10_000,
    channelOwner: (domain) => {
      const node = owners[domain];
      return node ? { identity: { kind: 'node', cluster: node.split('-')[0] as string, node, domain, fingerprint: `channel:${domain}` } } : { why: 'none' };
    },
    log: pino({ level: 'silent' }),
  });
  t.teardown(() => door.close());
  const never = new AbortController().signal;
  const blue = door.serveChannel({ channel: '/c/blue-1.sock', domain: 'blue-1', request: { request: OP.off, flags: 0, domain: 'blue-2', seqno: 1 } }, never);
  const red = door.serveChannel({ channel: '/c/red-1.sock', domain: 'red-1', request: { request: OP.off, flags: 0, domain: 'red-2', seqno: 1 } }, never);
  await until('both at the broker', () => started.length === 2);
  t.is(door.revoke(), 0, 'nothing changed');
  owners = { 'red-1': 'red-1' };
  t.is(door.revoke(), 1);
  t.deepEqual(await blue, Buffer.from([0x61, 0x62, 0x62, 0x61, RESP.fail]));
  let redDone = false;
  void red.then(() => (redDone = true));
  await new Promise((r) => setImmediate(r));
  t.false(redDone, "red-1's request runs on");
  owners = {};
  t.is(door.revoke(), 1);
  await red;
});
