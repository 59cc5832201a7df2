// The serial channel door in the real daemon (dist/broker/main.js), found
// through real libvirt: its test driver (a virsh toolstack at
// test:///FILE.xml, libvirt's own driver for this), whose running domains'
// XML binds unix serial sockets in the channels dir. At those paths listen
// TEST DOUBLES of QEMU's chardev (test/chardev-double.ts), on which the test
// writes the guest's bytes: a guest's fence_virt -D cannot be played on a
// socket real QEMU holds (test/cluster/serial-guest.test.ts runs a real
// guest). Shown here: discovery, identity by channel, the one audit line per
// request naming channel and domain, fencectl status, and a reload that moves
// the channels dir restarting discovery.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSerialRequest } from '../../../../broker/doors/fence-virt/serial-wire.js';
import { HOST_STATE, OP, RESP } from '../../../../broker/doors/fence-virt/wire.js';
import type { StatusReport } from '../../../../broker/status.js';
import { startDaemon, type Daemon } from '../../../broker-daemon.js';
import { ChardevDouble } from '../../../chardev-double.js';
import { fencectl, tempDir, until } from '../../../helpers.js';

const virshMissing = (await execa('virsh', ['-c', 'test:///default', 'list'], { reject: false, env: { LC_ALL: 'C' } })).failed ? "virsh (libvirt-clients) with libvirt's test driver is not usable" : undefined;
if (virshMissing && process.env.CI === 'true') throw new Error(`CI needs virsh: ${virshMissing}`);
if (virshMissing) console.error(`serial door daemon tests skipped here: ${virshMissing}; run scripts/system-setup.sh as root`);
const test = (virshMissing ? anyTest.skip : anyTest.serial) as TestFn;

const root = tempDir('fb-serial-daemon-');
const dir = join(root, 'channels');
const empty = join(root, 'none');
mkdirSync(dir, { mode: 0o700 });
mkdirSync(empty, { mode: 0o700 });
const DOMAINS = ['web-1', 'web-2', 'red-1', 'stray-1'];
const nodeXml = join(root, 'node.xml');
writeFileSync(
  nodeXml,
  `<node>\n${DOMAINS.map(
    (d) => `  <domain type='test'><name>${d}</name><memory>32768</memory><os><type>hvm</type></os>
    <devices><serial type='unix'><source mode='bind' path='${join(dir, `${d}.sock`)}'/><target port='1'/></serial></devices></domain>`,
  ).join('\n')}\n</node>\n`,
);

let d: Daemon;
const guests: Record<string, ChardevDouble> = {};

anyTest.before(async () => {
  if (virshMissing) return;
  for (const name of DOMAINS) guests[name] = await ChardevDouble.listen(join(dir, `${name}.sock`));
  d = await startDaemon({
    clusters: { web: { domains: ['web-1', 'web-2'], nodes: { 'web-1': 'web-1', 'web-2': 'web-2' } }, red: { domains: ['red-1'], nodes: { 'red-1': 'red-1' } } },
    toolstack: `{ type: virsh, uri: "test://${nodeXml}" }`,
    extraBroker: ['  fence_virt:', '    channels:', `      dir: ${dir}`, '      rescan: 1'],
  });
  for (const g of Object.values(guests)) await g.connected(1, 60_000);
});

anyTest.after.always(async () => {
  await d?.stop();
  for (const g of Object.values(guests)) await g.close();
});

let seq = 1;
const ask = async (domain: string, op: number, target = '') => {
  const g = guests[domain] as ChardevDouble;
  g.write(encodeSerialRequest({ request: op, flags: 0, domain: target, seqno: ++seq }));
  return g.reply(60_000);
};

async function serialStatus(): Promise<StatusReport['doors'][number] | undefined> {
  const r = await fencectl(['status', '--config', d.config, '--json']);
  if (r.exitCode !== 0) throw new Error(`fencectl status exited ${r.exitCode}: ${r.stderr}`);
  return (JSON.parse(String(r.stdout)) as StatusReport).doors.find((x) => x.door === 'fence_virt/serial');
}

test('the ready line and fencectl status name the channels dir and the channels connected', async (t) => {
  t.regex(d.logTail(1_000_000), new RegExp(`"channels":\\{"dir":"${dir.replaceAll('/', '\\/')}","mode":"serial"`));
  t.deepEqual(await serialStatus(), { door: 'fence_virt/serial', listen: dir, connections: { connected: 4, known: 4 } });
});

test('status and hostlist from a guest: the node its channel proves; one audit line each naming channel and domain', async (t) => {
  t.deepEqual(await ask('web-1', OP.status, 'web-2'), { code: RESP.success, bytes: 5 });
  const r = await ask('web-1', OP.hostlist);
  t.is(r.code, RESP.hostlist);
  t.deepEqual(r.hosts, [{ domain: 'web-1', state: HOST_STATE.on }, { domain: 'web-2', state: HOST_STATE.on }]);
  t.is(r.final, RESP.success);
  const lines = d.audit().filter((l) => l.peer === 'channel:web-1');
  t.is(lines.length, 2);
  for (const l of lines) t.like(l, { door: 'fence_virt/serial', channel: join(dir, 'web-1.sock'), channel_domain: 'web-1', cluster: 'web', node: 'web-1', decision: 'allow' });
});

test("another tenant's guest is refused; a domain no node owns is refused and audited by the door", async (t) => {
  t.deepEqual(await ask('red-1', OP.status, 'web-2'), { code: RESP.perm, bytes: 5 });
  t.like(d.audit().filter((l) => l.peer === 'channel:red-1').at(-1), { door: 'fence_virt/serial', channel_domain: 'red-1', cluster: 'red', decision: 'deny', target: 'web-2' });
  t.deepEqual(await ask('stray-1', OP.off, 'web-2'), { code: RESP.perm, bytes: 5 });
  await until('the unowned refusal on disk', () => d.auditAll().some((l) => l.kind === 'fence_virt_channel_unowned'));
  t.like(d.auditAll().find((l) => l.kind === 'fence_virt_channel_unowned'), { event: 'refusal', door: 'fence_virt/serial', peer: 'channel:stray-1', channel: join(dir, 'stray-1.sock'), channel_domain: 'stray-1', op: 'off', domain: 'web-2' });
  t.is(d.audit().filter((l) => l.peer === 'channel:stray-1').length, 0, 'never reached the broker');
});

test('noise on a channel, then a request: served', async (t) => {
  (guests['web-2'] as ChardevDouble).write(Buffer.from('\r\n[    3.141592] random: crng init done\r\nabb\x00abba'));
  t.deepEqual(await ask('web-2', OP.status, 'web-1'), { code: RESP.success, bytes: 5 });
});

test('a reload that moves the channels dir restarts discovery: the old channels close, moving back finds them again', async (t) => {
  const before = (guests['web-1'] as ChardevDouble).connections.length;
  const moved = await d.reload((y) => y.replace(`      dir: ${dir}`, `      dir: ${empty}`));
  t.is(moved.msg, 'reloaded');
  // Reloaded now, not left for a restart.
  t.is(d.auditAll().filter((l) => l.event === 'reload').at(-1)?.broker_settings_need_restart, undefined);
  await until('the channels closed', () => Object.values(guests).every((g) => g.current?.destroyed === true), 60_000);
  let status = await serialStatus();
  for (const deadline = performance.now() + 60_000; status?.listen !== empty && performance.now() < deadline; ) status = await serialStatus();
  t.like(status, { listen: empty, connections: { connected: 0, known: 0 } });
  const back = await d.reload((y) => y.replace(`      dir: ${empty}`, `      dir: ${dir}`));
  t.is(back.msg, 'reloaded');
  for (const g of Object.values(guests)) await g.connected(before + 1, 60_000);
  t.deepEqual(await ask('web-1', OP.status, 'web-2'), { code: RESP.success, bytes: 5 });
});
