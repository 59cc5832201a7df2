// Channel discovery (channels.ts) against real libvirt and QEMU: firmware-only
// TCG domains whose XML binds unix serial sockets, some inside the channels
// dir and some not. Only the socket directly inside the dir, of the configured
// mode, is reported; a domain started later is found through libvirt's events
// (the periodic re-list is set far beyond the test's bounds), a restarted one
// is found again and reconnected to, and the event watch comes back after it
// dies. The broker's transport (serial.ts) connects to what is found: the
// real QEMU chardev accepts it. Last, the real daemon does the same, and
// connects again after its domain and after itself restarted.
import anyTest, { type TestFn } from 'ava';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { ChannelDiscovery } from '../../../../broker/doors/fence-virt/channels.js';
import { SerialChannels } from '../../../../broker/doors/fence-virt/serial.js';
import type { StatusReport } from '../../../../broker/status.js';
import { startDaemon, type Daemon } from '../../../broker-daemon.js';
import { fencectl, tempDir, until } from '../../../helpers.js';
import { createDomain, libvirtMissing, removeDomain, sweepStale, URI, virsh } from '../../../libvirt-host.js';

const missing = await libvirtMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs real libvirt/QEMU: ${missing}`);
if (missing) console.error(`channel discovery tests skipped here: ${missing}; run scripts/system-setup.sh as root`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

const created: string[] = [];
const root = tempDir('fb-ch-');
const dir = join(root, 'channels');
const outside = tempDir('fb-ch-out-');
mkdirSync(join(dir, 'sub'), { recursive: true, mode: 0o700 });
/** The daemon's channels dir (D's socket): apart, since a QEMU chardev takes one client at a time. */
const daemonDir = join(root, 'daemon');
mkdirSync(daemonDir, { mode: 0o700 });

const serial = (path: string, port: number) => `<serial type='unix'><source mode='bind' path='${path}'/><target port='${port}'/></serial>`;
const agent = (path: string) => `<channel type='unix'><source mode='bind' path='${path}'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`;

/** A: its channel, after a socket outside the dir, one in a subfolder and the guest agent's in the dir. B: only those others. C: its channel, started later. */
const devicesA = (n: string) => serial(join(outside, `${n}.sock`), 0) + serial(join(dir, 'sub', `${n}.sock`), 1) + agent(join(dir, `${n}.agent.sock`)) + serial(join(dir, `${n}.sock`), 2);
const devicesB = (n: string) => serial(join(dir, 'sub', `${n}.sock`), 0) + agent(join(dir, `${n}.agent.sock`)) + serial(join(outside, `${n}.sock`), 1);
const devicesC = (n: string) => serial(join(dir, `${n}.sock`), 1);
const devicesD = (n: string) => serial(join(daemonDir, `${n}.sock`), 1);

let A = '';
let B = '';
let C = '';
/** The daemon's domain, its channel in its own dir. */
let D = '';

anyTest.before(async () => {
  if (missing) return;
  await sweepStale();
  const track = (name: string) => created.push(name);
  [A, B, C, D] = await Promise.all([createDomain('cha', true, track, devicesA), createDomain('chb', true, track, devicesB), createDomain('chc', false, track, devicesC), createDomain('chd', true, track, devicesD)]);
});

anyTest.after.always(async () => {
  await Promise.all(created.map(removeDomain));
});

function discovery(mode: 'serial' | 'vmchannel', rescanMs = 300_000) {
  const log = pino({ level: 'silent' });
  const events: string[] = [];
  const channels = new SerialChannels({ serve: () => Promise.resolve(undefined), dir, readTimeoutMs: 5_000, requestsPerSecond: 2, burst: 5, audit: () => undefined, log, backoff: { minMs: 100, maxMs: 1_000 } });
  const d = new ChannelDiscovery({
    uri: URI,
    dir,
    mode,
    rescanMs,
    commandTimeoutMs: 30_000,
    // Other tests' domains on this host may come and go: only ours are recorded.
    added: (domain, path) => {
      if (created.includes(domain)) events.push(`+${domain} ${path}`);
      if (mode === 'serial') channels.add(domain, path);
    },
    removed: (domain) => {
      if (created.includes(domain)) events.push(`-${domain}`);
      channels.remove(domain);
    },
    log,
    eventBackoff: { minMs: 100, maxMs: 1_000 },
  });
  return { d, channels, events, close: async () => {
    await d.close();
    channels.close();
  } };
}

const ours = (m: Map<string, string>) => Object.fromEntries([...m].filter(([k]) => created.includes(k)));
const connectedTo = (c: SerialChannels, domain: string) => c.list().find((i) => i.domain === domain)?.connected === true;

test('serial mode: only the socket directly inside the dir; later, restarted and event-watch faults', async (t) => {
  const s = discovery('serial');
  t.teardown(s.close);
  await s.d.start();
  // The first scan: A's channel, not its socket outside, in the subfolder or the agent's; B has none that counts.
  t.deepEqual(ours(s.d.channels()), { [A]: join(dir, `${A}.sock`) });
  t.deepEqual(s.events, [`+${A} ${join(dir, `${A}.sock`)}`]);
  await until(`connected to ${A}'s QEMU chardev`, () => connectedTo(s.channels, A));

  // C starts later: found through libvirt's lifecycle event (the re-list is 300 s away).
  t.is((await virsh('start', C)).exitCode, 0);
  await until(`${C} found`, () => s.d.channels().has(C), 60_000);
  await until(`connected to ${C}`, () => connectedTo(s.channels, C));
  t.true(s.d.eventsSeen > 0);

  // A restarted: dropped when it stops, found again (a new QEMU, a new socket) when it starts.
  t.is((await virsh('destroy', A)).exitCode, 0);
  await until(`${A} dropped`, () => !s.d.channels().has(A), 60_000);
  t.is(s.channels.list().some((i) => i.domain === A), false);
  t.is((await virsh('start', A)).exitCode, 0);
  await until(`${A} found again`, () => s.d.channels().has(A), 60_000);
  await until(`connected to ${A} again`, () => connectedTo(s.channels, A));
  t.deepEqual(s.events.slice(-2), [`-${A}`, `+${A} ${join(dir, `${A}.sock`)}`]);

  // The event watch dies (as when libvirtd restarts): it is started again, and events work again.
  const pid = s.d.watcherPid;
  t.truthy(pid);
  process.kill(pid as number, 'SIGKILL');
  await until('a new event watch', () => s.d.watcherPid !== undefined && s.d.watcherPid !== pid, 60_000);
  const seen = s.d.eventsSeen;
  t.is((await virsh('destroy', C)).exitCode, 0);
  await until(`${C} dropped`, () => !s.d.channels().has(C), 60_000);
  t.true(s.d.eventsSeen > seen, 'through an event of the new watch');
  t.deepEqual(ours(s.d.channels()), { [A]: join(dir, `${A}.sock`) });
});

test('the periodic re-list runs beside the events, and keeps the same answer', async (t) => {
  // Running beside the events: the count of scans grows with time alone.
  const s = discovery('serial', 1_000);
  t.teardown(s.close);
  await s.d.start();
  const first = s.d.scans;
  await until('two more scans', () => s.d.scans >= first + 2, 30_000);
  t.deepEqual(ours(s.d.channels()), { [A]: join(dir, `${A}.sock`) });
});

test('vmchannel mode: the <channel> sockets in the dir count, the serial ports do not', async (t) => {
  const s = discovery('vmchannel');
  t.teardown(s.close);
  await s.d.start();
  t.deepEqual(ours(s.d.channels()), { [A]: join(dir, `${A}.agent.sock`), [B]: join(dir, `${B}.agent.sock`) });
});

/** The serial door's line of fencectl status. */
async function serialStatus(d: Daemon): Promise<StatusReport['doors'][number] | undefined> {
  const r = await fencectl(['status', '--config', d.config, '--json']);
  if (r.exitCode !== 0) throw new Error(`fencectl status exited ${r.exitCode}: ${r.stderr}`);
  return (JSON.parse(String(r.stdout)) as StatusReport).doors.find((x) => x.door === 'fence_virt/serial');
}

/** Polls fencectl status (each call a process) until `check` holds; returns the last answer. */
async function statusUntil(d: Daemon, what: string, check: (s: StatusReport['doors'][number] | undefined) => boolean): Promise<StatusReport['doors'][number] | undefined> {
  const deadline = performance.now() + 90_000;
  for (;;) {
    const s = await serialStatus(d);
    if (check(s)) return s;
    if (performance.now() > deadline) throw new Error(`fencectl status: not ${what} within 90 s: ${JSON.stringify(s)}; ${d.logTail()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until the daemon's log, after `mark` characters, has a line matching `re`. */
async function logUntil(d: Daemon, re: RegExp, mark: number): Promise<void> {
  await until(`a log line matching ${re}`, () => re.test(d.logTail(1e9).slice(mark)), 90_000);
}
const logMark = (d: Daemon): number => d.logTail(1e9).length;

test('the daemon finds the channels over libvirt and connects to QEMU; a restarted domain and a restarted broker connect again', async (t) => {
  const d = await startDaemon({
    clusters: { blue: { domains: [D], nodes: { 'blue-1': D } } },
    toolstack: `{ type: virsh, uri: "${URI}" }`,
    extraBroker: ['  fence_virt:', '    channels:', `      dir: ${daemonDir}`],
  });
  let running = d;
  t.teardown(() => running.stop());
  const connected = new RegExp(`fence_virt/serial: connected to ${D}'s channel`);
  await logUntil(d, connected, 0);
  t.deepEqual(await statusUntil(d, 'connected', (s) => s?.connections.connected === 1), { door: 'fence_virt/serial', listen: daemonDir, connections: { connected: 1, known: 1 } });
  // Restarted: dropped while off, connected to the new QEMU once it runs again.
  let mark = logMark(d);
  t.is((await virsh('destroy', D)).exitCode, 0);
  await logUntil(d, new RegExp(`${D} is not running; its channel is dropped`), mark);
  mark = logMark(d);
  t.is((await virsh('start', D)).exitCode, 0);
  await logUntil(d, connected, mark);
  // The broker restarted while the domain runs: it finds it and connects again.
  await d.stop();
  running = await d.restart();
  await logUntil(running, connected, 0);
  t.deepEqual(await statusUntil(running, 'connected', (s) => s?.connections.connected === 1), { door: 'fence_virt/serial', listen: daemonDir, connections: { connected: 1, known: 1 } });
});
