// Which sockets of a domain's XML count as its fence_virt channel (channels.ts
// channelPaths): only a bound unix socket directly inside the channels dir,
// on a device of the configured mode. Everything else, the guest agent's
// channel above all, is never connected to. The XML is shaped like
// `virsh dumpxml` of a running domain prints it.
import test from 'ava';
import { channelPaths, insideDir, parseRunning } from '../../../../broker/doors/fence-virt/channels.js';

const DIR = '/run/fence-broker/channels';
const dom = (devices: string) => `<domain type='kvm' id='7'>
  <name>web-1</name>
  <uuid>6c1a8a53-3c1c-4d6b-9a3c-0a8f0e7c2b11</uuid>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    ${devices}
  </devices>
</domain>`;
const serial = (path: string, mode = 'bind', type = 'unix', port = 1) =>
  `<serial type='${type}'><source mode='${mode}' path='${path}'/><target type='isa-serial' port='${port}'><model name='isa-serial'/></target><alias name='serial${port}'/></serial>`;
const agent = (path: string) =>
  `<channel type='unix'><source mode='bind' path='${path}'/><target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/><alias name='channel0'/><address type='virtio-serial' controller='0' bus='0' port='1'/></channel>`;

test('serial mode: the bound unix serial directly inside the dir, nothing else', (t) => {
  const xml = dom(
    [
      `<serial type='pty'><source path='/dev/pts/3'/><target type='isa-serial' port='0'/></serial>`,
      serial('/var/lib/libvirt/qemu/web-1.sock'), // outside the dir
      serial(`${DIR}/sub/web-1.sock`), // a subfolder
      serial(`${DIR}/web-1.connect.sock`, 'connect'), // QEMU connects out: not a socket it binds
      serial(`${DIR}/../web-1.sock`), // not normalised
      serial(`${DIR}//web-1.sock`),
      agent(`${DIR}/web-1.agent.sock`), // the other mode: the guest agent's channel
      serial(`${DIR}/web-1.sock`),
    ].join('\n    '),
  );
  t.deepEqual(channelPaths(xml, DIR, 'serial'), [`${DIR}/web-1.sock`]);
});

test('vmchannel mode: the bound unix channel inside the dir; serial ports do not count', (t) => {
  const guestfwd = `<channel type='unix'><source mode='bind' path='${DIR}/web-1.fwd.sock'/><target type='guestfwd' address='10.0.2.179' port='1229'/></channel>`;
  const xml = dom([serial(`${DIR}/web-1.sock`), agent('/var/lib/libvirt/qemu/channel/target/domain-7-web-1/org.qemu.guest_agent.0'), guestfwd].join('\n'));
  t.deepEqual(channelPaths(xml, DIR, 'vmchannel'), [`${DIR}/web-1.fwd.sock`]);
  t.deepEqual(channelPaths(xml, DIR, 'serial'), [`${DIR}/web-1.sock`]);
});

test('no devices, one device, several: arrays or not, the answer reads alike; broken XML throws', (t) => {
  t.deepEqual(channelPaths(`<domain type='qemu'><name>x</name></domain>`, DIR, 'serial'), []);
  t.deepEqual(channelPaths(dom(''), DIR, 'serial'), []);
  t.deepEqual(channelPaths(dom(serial(`${DIR}/a.sock`, 'bind', 'unix', 0) + serial(`${DIR}/b.sock`)), DIR, 'serial'), [`${DIR}/a.sock`, `${DIR}/b.sock`]);
  t.deepEqual(channelPaths(dom(serial(`${DIR}/a.sock`, 'bind', 'tcp')), DIR, 'serial'), [], 'a tcp serial is no unix socket');
  t.throws(() => channelPaths('<domain><devices><serial type="unix">', DIR, 'serial'));
});

test('insideDir: directly inside, absolute, normalised', (t) => {
  t.true(insideDir('/d/x.sock', '/d'));
  t.false(insideDir('/d/e/x.sock', '/d'));
  t.false(insideDir('/d/../d/x.sock', '/d'));
  t.false(insideDir('/d/./x.sock', '/d'));
  t.false(insideDir('d/x.sock', 'd'));
  t.false(insideDir('/d/', '/d'));
  t.false(insideDir('/dd/x.sock', '/d'));
});

test("virsh list: each running domain's name and id", (t) => {
  const out = ' Id   Name        State\n---------------------------\n 1    web-1       running\n 12   db-2        paused\n -    off-3       shut off\n\n';
  t.deepEqual([...parseRunning(out)], [['web-1', '1'], ['db-2', '12'], ['off-3', '-']]);
});
