// The serial channel door end to end (issue 20, docs/design.md §3): real
// guests with no network device at all (test/guest/: a Debian kernel and a
// busybox initramfs holding Debian's fence_virt, booted by libvirt) fence
// through their own serial port /dev/ttyS1, whose host end is a unix socket in
// the broker's channels dir. The real broker daemon finds those sockets in the
// domains' XML and proves who asks by which domain's channel the bytes came
// out of. Every result is checked by the test's own `virsh domstate`. Two
// guests only (each boot costs a TCG CPU), shared across the tests in order:
// blue-1's guest, and red-1's guest (another tenant). The peer blue-1 fences is
// a plain firmware domain.
import anyTest, { type TestFn } from 'ava';
import { existsSync } from 'node:fs';
import { projectPath } from '../../common/paths.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { cleanup, tempDir, until, within } from '../helpers.js';
import { createDomain, domstate, libvirtMissing, removeDomain, sweepStale, URI, virsh } from '../libvirt-host.js';
import { Guest, virtType, type RunResult } from '../guest/guest.js';
import { guestImage, imageMissing, type GuestImage } from '../guest/image.js';

const built = existsSync(projectPath('dist', 'broker', 'main.js')) ? undefined : 'the broker is not built (npx tsc)';
const missing = (await imageMissing()) ?? (await libvirtMissing()) ?? built;
if (missing && process.env.CI === 'true') throw new Error(`CI needs the guest image build, libvirt and the built broker: ${missing}`);
if (missing) console.error(`serial channel guest tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let image: GuestImage;
let d: Daemon | undefined;
let blue: Guest | undefined; // blue-1's domain
let red: Guest | undefined; // red-1's domain, another tenant
let peer: string; // blue-2's domain: a firmware domain, fenced by blue-1
let channels: string;
const domains: string[] = [];

const FV = 'fence_virt -D /dev/ttyS1 -t 20';
const fv = (g: Guest | undefined, args: string, timeoutMs = 90_000): Promise<RunResult> => (g as Guest).run(`${FV} ${args}`, timeoutMs);

/** Request outcomes and door refusals of the serial door since `from` (not the write-ahead intents). */
const serialLines = (from: number) => (d as Daemon).auditAll().slice(from).filter((l) => l.event !== 'intent' && l.door === 'fence_virt/serial');

/** Asks from `g` until the broker answers (its channel found and connected), bounded. */
async function served(g: Guest, what = `-o status -n ${peer}`, timeoutMs = 120_000): Promise<RunResult> {
  const deadline = performance.now() + timeoutMs;
  let last: RunResult = { out: '', rc: -1 };
  while (performance.now() < deadline) {
    last = await fv(g, what, 90_000);
    if (last.rc === 0 || last.rc === 2) return last;
  }
  throw new Error(`${g.name}: ${what} not served within ${timeoutMs} ms: rc ${last.rc} ${last.out}; broker: ${d?.logTail(2000)}`);
}

anyTest.before(async (t) => {
  if (missing) return;
  await sweepStale();
  image = await within('building the guest image', guestImage(), 16 * 60_000);
  t.log(`guest image ${image.key}: ${image.built ? 'built' : 'cached'} in ${Math.round(image.ms)} ms`);
  channels = tempDir('fb-chan-');
  peer = await createDomain('speer', true, (n) => domains.push(n));
  blue = await Guest.define({ tag: 'sblue', image, channelsDir: channels, track: (n) => domains.push(n) });
  red = await Guest.define({ tag: 'sred', image, channelsDir: channels, track: (n) => domains.push(n) });
  d = await startDaemon({
    clusters: {
      blue: { domains: [blue.name, peer], nodes: { 'blue-1': blue.name, 'blue-2': peer } },
      red: { domains: [red.name], nodes: { 'red-1': red.name } },
    },
    toolstack: `{ type: virsh, uri: "${URI}" }`,
    extraBroker: ['  fence_virt:', '    read_timeout: 2', '    channels:', `      dir: ${channels}`, '      mode: serial', '      rescan: 5'],
  });
  // The guests start after the broker: it must find domains started later.
  await Promise.all([blue.start(), red.start()]);
  t.log(`guests (${await virtType()}): ${blue.name} shell after ${Math.round(blue.bootMs)} ms, ${red.name} after ${Math.round(red.bootMs)} ms`);
  await served(blue);
});

anyTest.after.always(async () => {
  // Each step bounded and named: a hang here is a failure that says where, not ava's silent timeout.
  await cleanup(
    () => d && within('stopping the broker', d.stop(), 60_000, () => d?.logTail(1500) ?? ''),
    () => blue && within(`destroying ${blue.name}`, blue.destroy(), 60_000),
    () => red && within(`destroying ${red.name}`, red.destroy(), 60_000),
    ...domains.map((n) => () => within(`removing ${n}`, removeDomain(n), 60_000)),
  );
});

test('status and list from the guest through its channel: list shows only its cluster\'s domains', async (t) => {
  const from = d!.auditAll().length;
  const st = await fv(blue, `-o status -n ${peer}`);
  t.is(st.rc, 0, st.out);
  t.regex(st.out, /Status: ON/);
  const list = await fv(blue, '-o list');
  t.is(list.rc, 0, list.out);
  const names = list.out.trim().split('\n').map((l) => l.trim().split(/\s+/)[0]).sort();
  t.deepEqual(names, [blue!.name, peer].sort());
  const redList = await fv(red, '-o list');
  t.is(redList.rc, 0, redList.out);
  t.deepEqual(redList.out.trim().split('\n').map((l) => l.trim().split(/\s+/)[0]), [red!.name]);
  t.deepEqual(serialLines(from).map((l) => [l.action, l.node]), [['status', 'blue-1'], ['list', 'blue-1'], ['list', 'red-1']]);
});

test('a guest fences its peer\'s domain through its channel; virsh confirms off; the audit line names the channel and the domain it proves', async (t) => {
  const from = d!.auditAll().length;
  const off = await fv(blue, `-o off -n ${peer}`);
  t.is(off.rc, 0, `${off.out}\nbroker: ${d!.logTail(1500)}`);
  t.is(await domstate(peer), 'shut off');
  const lines = serialLines(from);
  t.is(lines.length, 1, JSON.stringify(lines));
  t.like(lines[0], { event: 'request', door: 'fence_virt/serial', cluster: 'blue', node: 'blue-1', action: 'off', target: peer, decision: 'allow', code: 'ok', channel: blue!.channel, channel_domain: blue!.name, peer: `channel:${blue!.name}` });
  const st = await fv(blue, `-o status -n ${peer}`);
  t.is(st.rc, 2, st.out);
  t.regex(st.out, /Status: OFF/);
  // Back on for the tests after this one.
  t.is((await virsh('start', peer)).exitCode, 0);
});

test('a guest of another tenant asking for the same domain is refused; the domain is untouched; the refusal names red\'s channel', async (t) => {
  const from = d!.auditAll().length;
  const off = await fv(red, `-o off -n ${peer}`);
  t.is(off.rc, 3, `RESP_PERM expected: ${off.out}`);
  t.is(await domstate(peer), 'running');
  const lines = serialLines(from);
  t.is(lines.length, 1, JSON.stringify(lines));
  t.like(lines[0], { door: 'fence_virt/serial', cluster: 'red', node: 'red-1', target: peer, decision: 'deny', channel: red!.channel, channel_domain: red!.name });
});

test('fault: garbage, then a valid request on the same channel is served', async (t) => {
  const from = d!.auditAll().length;
  // 4 KiB of bytes, ending in a torn magic ("ab"), then the real client.
  const r = await blue!.run(`head -c 4094 /dev/urandom >/dev/ttyS1; printf 'ab' >/dev/ttyS1; ${FV} -o status -n ${peer}`, 90_000);
  t.is(r.rc, 0, `${r.out}\nbroker: ${d!.logTail(1500)}`);
  t.regex(r.out, /Status: ON/);
  const lines = serialLines(from).filter((l) => l.event === 'request');
  t.deepEqual(lines.map((l) => [l.action, l.target, l.channel_domain]), [['status', peer, blue!.name]]);
});

test('fault: a request cut off halfway: no action, audited as a read timeout naming the channel; the next request is served', async (t) => {
  const from = d!.auditAll().length;
  // serial_req_t begins: magic 0x61626261 (LE bytes "abba"), request 1 (off), flags 0, then the domain, cut short.
  const r = await blue!.run(`printf 'abba\\001\\000${peer.slice(0, 6)}' >/dev/ttyS1`);
  t.is(r.rc, 0, r.out);
  await until('the cut-off request audited', () => serialLines(from).some((l) => l.kind === 'fence_virt_read_timeout'), 60_000);
  const line = serialLines(from).find((l) => l.kind === 'fence_virt_read_timeout');
  t.like(line, { channel: blue!.channel, channel_domain: blue!.name });
  t.is(await domstate(peer), 'running');
  t.false(serialLines(from).some((l) => l.action === 'off'));
  const st = await fv(blue, `-o status -n ${peer}`);
  t.is(st.rc, 0, st.out);
});

test('fault: two fence_virt runs at once inside one guest: the one holding the port is served, the other stops at the port\'s lock, and the channel works after', async (t) => {
  // fence_virt's serial client takes a write lock on the port (fcntl F_SETLK,
  // not waiting) before it writes: a second run while the first holds it fails
  // at once, "Failed to lock serial port", with nothing written. Runs that do
  // not overlap are both served. Either way the broker sees only whole
  // requests, serves each once, and the channel serves the next one.
  const from = d!.auditAll().length;
  const r = await blue!.run(`${FV} -o status -n ${peer} >/tmp/a 2>&1 & a=$!; ${FV} -o status -n ${blue!.name} >/tmp/b 2>&1 & b=$!; wait $a; ra=$?; wait $b; rb=$?; echo "rc $ra $rb"; echo '[a]'; cat /tmp/a; echo '[b]'; cat /tmp/b`, 120_000);
  t.is(r.rc, 0, r.out);
  const m = /rc (\d+) (\d+)\s+\[a\]([\s\S]*)\[b\]([\s\S]*)$/.exec(r.out);
  if (!m) return t.fail(`unexpected output: ${r.out}`);
  const runs = [
    { target: peer, rc: Number(m[1]), out: m[3] as string },
    { target: blue!.name, rc: Number(m[2]), out: m[4] as string },
  ];
  t.log(`clients: ${runs.map((c) => `rc ${c.rc}: ${c.out.trim().replace(/\n/g, ' / ')}`).join(' | ')}`);
  for (const c of runs) t.true((c.rc === 0 && /Status: ON/.test(c.out)) || /Failed to lock serial port/.test(c.out), `status of ${c.target}: rc ${c.rc} ${c.out}`);
  const answered = runs.filter((c) => c.rc === 0);
  t.true(answered.length >= 1, 'one of the two holds the port and is served');
  // Both clients have exited: the broker heard exactly the requests of the runs that held the port, once each.
  const during = serialLines(from);
  t.deepEqual(during.map((l) => [l.event, l.action, l.target, l.channel_domain, l.code]).sort(), answered.map((c) => ['request', 'status', c.target, blue!.name, 'ok']).sort(), JSON.stringify(during));
  const after = await served(blue!);
  t.is(after.rc, 0, after.out);
  t.is(await domstate(peer), 'running');
});

test('fault: a flood on one guest\'s channel while another guest fences: the fence is served within its client\'s timeout while the flood goes on', async (t) => {
  const from = d!.auditAll().length;
  // red writes whole valid requests (status of its own domain) as fast as its
  // serial port goes, seqnos 1 to 3 over and over (repeats are replays), until stopped.
  const frame = (seq: number) => `abba\\004\\000${red!.name}${'\\000'.repeat(64 - red!.name.length)}${'\\' + (seq % 8).toString(8).padStart(3, '0')}\\000\\000\\000`;
  const startFlood = await red!.run(`(while :; do printf '${frame(1)}'; printf '${frame(2)}'; printf '${frame(3)}'; done) >/dev/ttyS1 & echo $! >/tmp/flood.pid`);
  t.is(startFlood.rc, 0, startFlood.out);
  try {
    await until('the flood reaching the broker', () => serialLines(from).some((l) => l.channel_domain === red!.name), 60_000);
    // "On time" is the client's own deadline (-t 20): an answer after it is a failed fence.
    const t1 = performance.now();
    const off = await fv(blue, `-o off -n ${peer}`);
    const offMs = performance.now() - t1;
    t.is(off.rc, 0, `${off.out}\nbroker: ${d!.logTail(1500)}`);
    t.is(await domstate(peer), 'shut off');
    // The flood was still going when the off was served: red's channel has lines after blue's off.
    const lines = () => serialLines(from);
    const offAt = lines().findIndex((l) => l.event === 'request' && l.action === 'off' && l.channel_domain === blue!.name);
    t.true(offAt >= 0, JSON.stringify(lines()));
    await until('red\'s flood heard after blue\'s off', () => lines().slice(offAt + 1).some((l) => l.channel_domain === red!.name), 60_000);
    const red_ = lines().filter((l) => l.channel_domain === red!.name);
    t.log(`blue's off during red's flood: ${Math.round(offMs)} ms at the guest's shell, ${lines()[offAt]?.duration_ms} ms in the broker; red's channel: ${red_.length} audit lines (${[...new Set(red_.map((l) => l.kind ?? l.action))].join(', ')})`);
  } finally {
    await red!.run('kill $(cat /tmp/flood.pid)');
  }
  t.is((await virsh('start', peer)).exitCode, 0);
});

test('fault: a guest\'s domain restarted: its channel comes back and it is served again', async (t) => {
  await blue!.stop();
  await blue!.start();
  const st = await served(blue!);
  t.is(st.rc, 0, st.out);
});

test('fault: the broker killed (-9) and started again while the guests hold their channels: both are served again', async (t) => {
  const old = d!;
  await old.kill9();
  d = await old.restart();
  const [b, r] = await Promise.all([served(blue!), served(red!, '-o list')]);
  t.is(b.rc, 0, b.out);
  t.is(r.rc, 0, r.out);
});
