// The real guest (issue 20), before fence-broker's serial door: a Debian
// kernel and busybox initramfs built from Debian's packages (image.ts), booted
// by libvirt with no network device and no disk (guest.ts), fences through its
// serial port /dev/ttyS1 with Debian's fence_virt against Debian's fence_virtd
// serial listener. This shows the guest side of the protocol works, so the
// broker's tests can lean on it; it also reports the build and boot times.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { join } from 'node:path';
import { cleanup, tempDir, within } from '../helpers.js';
import { createDomain, domstate, libvirtMissing, removeDomain, sweepStale, virsh } from '../libvirt-host.js';
import { fenceVirtdSerialMissing, startFenceVirtdSerial, type FenceVirtdSerial } from './fence-virtd.js';
import { Guest, virtType } from './guest.js';
import { guestImage, imageMissing, type GuestImage } from './image.js';

const missing = (await imageMissing()) ?? fenceVirtdSerialMissing() ?? (await libvirtMissing());
if (missing && process.env.CI === 'true') throw new Error(`CI needs the guest image build, fence_virtd's serial listener and libvirt: ${missing}`);
if (missing) console.error(`real-guest tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let image: GuestImage;
let guest: Guest | undefined;
let peer: string | undefined;
let fvd: FenceVirtdSerial | undefined;
const domains: string[] = [];
let channels: string;

const FV = 'fence_virt -D /dev/ttyS1 -t 10';

anyTest.before(async (t) => {
  if (missing) return;
  await sweepStale();
  image = await within('building the guest image', guestImage(), 16 * 60_000);
  t.log(`guest image ${image.key}: ${image.built ? 'built' : 'cached'} in ${Math.round(image.ms)} ms (${image.dir})`);
  channels = tempDir('fb-chan-');
  // The peer: a plain firmware domain the guest fences.
  peer = await createDomain('gpeer', true, (n) => domains.push(n));
  guest = await Guest.boot({ tag: 'guest', image, channelsDir: channels, track: (n) => domains.push(n) });
  t.log(`guest ${guest.name} (${await virtType()}): shell after ${Math.round(guest.bootMs)} ms`);
  // After the guests: fence_virtd's serial listener finds the domains running when it starts.
  fvd = startFenceVirtdSerial(tempDir('fb-fvd-'), channels);
});

anyTest.after.always(async () => {
  if (guest) console.error(`${guest.name}: the stalled shell nudged ${guest.resent} time(s) with an empty line`);
  await cleanup(
    () => fvd?.stop(),
    () => guest?.destroy(),
    ...domains.map((d) => () => removeDomain(d)),
  );
});

test('the guest has no network device and no disk: only lo inside, no <interface> or <disk> in its XML', async (t) => {
  const g = guest as Guest;
  const net = await g.run('ls /sys/class/net');
  t.is(net.rc, 0, net.out);
  t.deepEqual(net.out.trim().split(/\s+/), ['lo']);
  const xml = (await virsh('dumpxml', g.name)).stdout;
  t.notRegex(xml, /<interface\b/);
  t.notRegex(xml, /<disk\b/);
  // The channel is the guest's second serial port, a unix socket in the channels dir.
  t.regex(xml, new RegExp(`<source mode=['"]bind['"] path=['"]${join(channels, `${g.name}.sock`).replace(/[.]/g, '\\.')}['"]`));
  const tty = await g.run('stty -F /dev/ttyS1 -a');
  t.is(tty.rc, 0, tty.out);
  t.regex(tty.out, /-echo\b/);
});

test('fence_virt -o list through /dev/ttyS1, answered by fence_virtd', async (t) => {
  const g = guest as Guest;
  // fence_virtd gives no other sign it is ready: ask until it answers.
  let last = { out: '', rc: -1 };
  const deadline = performance.now() + 120_000;
  while (performance.now() < deadline) {
    last = await g.run(`${FV} -o list`, 60_000);
    if (last.rc === 0) break;
  }
  t.is(last.rc, 0, `${last.out}\nfence_virtd: ${fvd?.log().slice(-1500)}`);
  t.regex(last.out, new RegExp(`^${peer}\\s`, 'm'));
  t.regex(last.out, new RegExp(`^${g.name}\\s`, 'm'));
});

test('fence_virt -o status and -o off of the peer through the serial port; virsh confirms off', async (t) => {
  const g = guest as Guest;
  const on = await g.run(`${FV} -o status -n ${peer}`, 60_000);
  t.is(on.rc, 0, on.out);
  t.regex(on.out, /Status: ON/);
  const off = await g.run(`${FV} -o off -n ${peer}`, 90_000);
  t.is(off.rc, 0, `${off.out}\nfence_virtd: ${fvd?.log().slice(-1500)}`);
  t.is(await domstate(peer as string), 'shut off');
  const st = await g.run(`${FV} -o status -n ${peer}`, 60_000);
  t.is(st.rc, 2, st.out);
  t.regex(st.out, /Status: OFF/);
});

test('the console harness: exit codes, stderr folded into out, a command that exits the shell is survived', async (t) => {
  const g = guest as Guest;
  t.deepEqual(await g.run('echo one; echo two >&2; false'), { out: 'one\ntwo\n', rc: 1 });
  // `exit` ends init's shell; init starts another, and the next command is served.
  await g.run('exit 3', 5_000).catch(() => undefined);
  const deadline = performance.now() + 60_000;
  let r: { out: string; rc: number } | undefined;
  while (!r && performance.now() < deadline) r = await g.run('echo back', 5_000).catch(() => undefined);
  t.deepEqual(r, { out: 'back\n', rc: 0 });
  // The build is from the host's fence_virt: same bytes in the guest.
  const host = (await execa('sha256sum', ['/usr/sbin/fence_virt'])).stdout.split(/\s/)[0];
  const inGuest = await g.run('sha256sum /usr/sbin/fence_virt');
  t.is(inGuest.out.split(/\s/)[0], host);
});
