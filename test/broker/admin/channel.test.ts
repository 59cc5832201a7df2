// fencectl channel NODE (issue 20): the snippet it prints is accepted by real
// libvirt as printed — `virsh attach-device --config` on a defined test domain,
// then `virsh dumpxml` shows the serial port on the socket DIR/DOMAIN.sock —
// and a domain started with it has QEMU listening on that socket, on the
// guest's second serial port (ttyS1's I/O port). The vmchannel form is
// accepted too. A bad node name, a node of no cluster, a node of several
// clusters, channels not configured and a socket path too long are usage
// errors (exit 2) naming what and where; the full text repeats the snippet,
// the virsh line and the guest's fence_virt line.
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fencectl, newPublicKey, tempDir } from '../../helpers.js';
import { createDomain, libvirtMissing, removeDomain, sweepStale, URI, virsh } from '../../libvirt-host.js';

const missing = await libvirtMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs real libvirt/QEMU: ${missing}`);
if (missing) console.error(`fencectl channel's libvirt tests skipped here: ${missing}`);
const withLibvirt = (missing ? anyTest.skip : anyTest) as TestFn;
const test = anyTest;

const created: string[] = [];
if (!missing) await sweepStale();
anyTest.after.always(async () => {
  await Promise.all(created.map(removeDomain));
});

/**
 * A tenancy whose nodes run in the given domains (node name → domain), with
 * `channels` as broker.fence_virt.channels (YAML flow text, or undefined for
 * none). fencectl channel reads no policy and no host key: an empty stand-in
 * bundle keeps the config's file checks happy without the OPA build.
 */
function tenancy(nodes: Record<string, Record<string, string>>, channels: string | undefined, toolstack = `{ type: virsh, uri: "${URI}" }`): string {
  const dir = tempDir('fb-chan-');
  writeFileSync(join(dir, 'unused-policy.tar.gz'), '', { mode: 0o644 });
  mkdirSync(join(dir, 'keys'), { mode: 0o700 });
  const lines = [
    'broker:',
    '  listen: 127.0.0.1:2222',
    '  host_key: host_ed25519',
    `  toolstack: ${toolstack}`,
    '  audit_log: audit.jsonl',
    '  policy_bundle: unused-policy.tar.gz',
    '  fence_virt:',
    '    key_dir: keys',
    ...(channels === undefined ? [] : [`    channels: ${channels}`]),
    'clusters:',
  ];
  for (const [cluster, members] of Object.entries(nodes)) {
    lines.push(`  ${cluster}:`, `    domains: [${[...new Set(Object.values(members))].join(', ')}]`, '    nodes:');
    for (const [node, domain] of Object.entries(members)) lines.push(`      ${node}: { key: "${newPublicKey(node)}", domain: ${domain} }`);
  }
  const file = join(dir, 'clusters.yaml');
  writeFileSync(file, lines.join('\n') + '\n', { mode: 0o600 });
  return file;
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The first <TAG type='unix'> element of a domain's XML (libvirt's own output), whole. */
function unixDevice(xml: string, tag: 'serial' | 'channel'): string | undefined {
  return new RegExp(`<${tag} type='unix'>[^]*?</${tag}>`).exec(xml)?.[0];
}

withLibvirt('serial: the printed snippet, attached with virsh attach-device --config as printed, is in the domain XML; started, QEMU listens on DIR/DOMAIN.sock as the guest\'s ttyS1', async (t) => {
  const domain = await createDomain('chan', false, (n) => created.push(n));
  const dir = tempDir('fb-chan-sock-');
  const config = tenancy({ green: { 'g-1': domain, 'g-2': 'other-vm' } }, `{ dir: ${dir} }`);

  const full = await fencectl(['channel', '--config', config, 'g-1']);
  t.is(full.exitCode, 0, String(full.stderr));
  t.is(String(full.stderr), '');
  const xml = await fencectl(['channel', '--config', config, '--xml', 'g-1']);
  t.is(xml.exitCode, 0, String(xml.stderr));
  const socket = join(dir, `${domain}.sock`);
  t.is(String(xml.stdout), [`<serial type='unix'>`, `  <source mode='bind' path='${socket}'/>`, `  <target port='1'/>`, '</serial>'].join('\n'));
  // The full text carries the same snippet (indented), the attach line for this host's libvirt and the guest's line.
  const text = String(full.stdout);
  t.true(text.includes(String(xml.stdout).split('\n').map((l) => `   ${l}`).join('\n')), text);
  t.true(text.includes(`   virsh -c ${URI} attach-device ${domain} ${domain}-channel.xml --config\n`), text);
  t.true(text.includes('   fence_virt -D /dev/ttyS1 -o list\n'), text);
  t.regex(text, new RegExp(`channel ${escape(socket)} and channel_domain ${domain}`), 'says what the audit names');
  t.regex(text, /fencectl pacemaker --config \S+ --cluster green --agent fence_virt --serial/);

  // As printed: the file, then virsh with the printed arguments (the -c URI, the domain, the file, --config).
  const work = tempDir('fb-chan-work-');
  writeFileSync(join(work, `${domain}-channel.xml`), String(xml.stdout));
  const attachLine = /^ {3}virsh (.*)$/m.exec(text)?.[1]?.split(' ') ?? [];
  t.deepEqual(attachLine, ['-c', URI, 'attach-device', domain, `${domain}-channel.xml`, '--config']);
  const attached = await virsh(...attachLine.slice(2).map((a) => (a.endsWith('.xml') ? join(work, a) : a)));
  t.is(attached.exitCode, 0, `virsh attach-device: ${attached.stderr}`);
  const inactive = (await virsh('dumpxml', '--inactive', domain)).stdout;
  const serial = unixDevice(inactive, 'serial');
  t.truthy(serial, inactive);
  t.regex(String(serial), new RegExp(`<source mode='bind' path='${escape(socket)}'/>`));
  t.regex(String(serial), /<target type='isa-serial' port='1'>/, 'libvirt made it the ISA serial port 1');

  // Started: QEMU binds the socket where the snippet says, and the port sits at ttyS1's I/O address.
  const started = await virsh('start', domain);
  t.is(started.exitCode, 0, `virsh start: ${started.stderr}`);
  t.true(existsSync(socket) && statSync(socket).isSocket(), `${socket} is a socket QEMU bound`);
  const live = (await virsh('dumpxml', domain)).stdout;
  const liveSerial = String(unixDevice(live, 'serial'));
  t.regex(liveSerial, new RegExp(`path='${escape(socket)}'`));
  // QEMU's own view, joined by libvirt's alias (device id ALIAS, chardev
  // charALIAS): the chardev is on our socket ("disconnected": nobody has
  // connected yet), and the ISA serial device is at index 1, I/O port 0x2f8,
  // IRQ 3 — what Linux names ttyS1.
  const alias = /<alias name='([^']+)'\/>/.exec(liveSerial)?.[1];
  t.truthy(alias, liveSerial);
  const chardevs = await virsh('qemu-monitor-command', '--hmp', domain, 'info chardev');
  t.is(chardevs.exitCode, 0, chardevs.stderr);
  t.regex(chardevs.stdout, new RegExp(`^char${escape(String(alias))}: filename=(?:disconnected:)?unix:${escape(socket)}\\b`, 'm'));
  const qtree = await virsh('qemu-monitor-command', '--hmp', domain, 'info qtree');
  t.is(qtree.exitCode, 0, qtree.stderr);
  const isa = qtree.stdout.split(/\n(?=\s*dev: )/).find((d) => d.trim().startsWith(`dev: isa-serial, id "${alias}"`));
  t.truthy(isa, qtree.stdout);
  t.regex(String(isa), /index = 1\b/);
  t.regex(String(isa), /iobase = 760 \(0x2f8\)/);
  t.regex(String(isa), /irq = 3\b/);
  // And it accepts a connection, as the broker's will.
  await new Promise<void>((resolve, reject) => {
    const s = connect({ path: socket }, () => {
      s.destroy();
      resolve();
    });
    s.on('error', reject);
  });
  t.pass();
});

withLibvirt('vmchannel: the printed guestfwd <channel> is accepted by virsh attach-device --config and shows in the domain XML', async (t) => {
  const domain = await createDomain('vmchan', false, (n) => created.push(n));
  const dir = tempDir('fb-vmchan-sock-');
  const config = tenancy({ green: { 'g-1': domain } }, `{ dir: ${dir}, mode: vmchannel }`);
  const xml = await fencectl(['channel', '--config', config, '--xml', 'g-1']);
  t.is(xml.exitCode, 0, String(xml.stderr));
  const socket = join(dir, `${domain}.sock`);
  t.is(String(xml.stdout), [`<channel type='unix'>`, `  <source mode='bind' path='${socket}'/>`, `  <target type='guestfwd' address='10.0.2.179' port='1229'/>`, '</channel>'].join('\n'));
  const file = join(tempDir('fb-vmchan-work-'), 'c.xml');
  writeFileSync(file, String(xml.stdout));
  const attached = await virsh('attach-device', domain, file, '--config');
  t.is(attached.exitCode, 0, `virsh attach-device: ${attached.stderr}`);
  const channel = unixDevice((await virsh('dumpxml', '--inactive', domain)).stdout, 'channel');
  t.regex(String(channel), new RegExp(`<source mode='bind' path='${escape(socket)}'/>`));
  t.regex(String(channel), /<target type='guestfwd' address='10\.0\.2\.179' port='1229'\/>/);
  const text = String((await fencectl(['channel', '--config', config, 'g-1'])).stdout);
  t.true(text.includes('   fence_virt -A 10.0.2.179 -p 1229 -o list\n'), text);
});

const lines = (s: unknown): string[] => String(s).trim().split('\n');

/** Exit 2, the error on one line, then the pointer to --help. */
async function usage(t: ExecutionContext, args: string[], first: RegExp): Promise<void> {
  const r = await fencectl(['channel', ...args]);
  t.is(r.exitCode, 2, `${args.join(' ')}: ${String(r.stdout)}${String(r.stderr)}`);
  t.is(String(r.stdout), '', args.join(' '));
  t.is(lines(r.stderr).length, 2, String(r.stderr));
  t.regex(lines(r.stderr)[0] as string, first);
  t.is(lines(r.stderr)[1], "Try 'fencectl channel --help'.");
}


test('usage errors, exit 2, each naming what was wrong and where: a bad node name, no node, a node of several clusters, channels off, a socket path too long', async (t) => {
  const config = tenancy({ green: { 'g-1': 'green-vm1', shared: 'green-vm2' }, blue: { shared: 'blue-vm' } }, '{ dir: /run/fence-broker/channels }');
  await usage(t, ['--config', config, 'a b'], /^fencectl channel: NODE: "a b" does not match \^\[A-Za-z0-9\]/);
  await usage(t, ['--config', config, '--cluster', 'x/y', 'g-1'], /^fencectl channel: --cluster: "x\/y" does not match/);
  await usage(t, ['--config', config], /^fencectl channel: NODE is required$/);
  await usage(t, ['--config', config, 'g-1', 'g-2'], /^fencectl channel: unexpected argument "g-2"$/);
  // Located in the config: FILE:LINE:COL of the clusters key, or of the cluster's nodes.
  await usage(t, ['--config', config, 'g-9'], new RegExp(`^fencectl channel: ${escape(config)}:10:1: no node g-9 in the nodes of any cluster$`));
  await usage(t, ['--config', config, '--cluster', 'blue', 'g-1'], new RegExp(`^fencectl channel: ${escape(config)}:\\d+:5: no node g-1 in clusters\\.blue\\.nodes$`));
  await usage(t, ['--config', config, '--cluster', 'red', 'g-1'], new RegExp(`^fencectl channel: ${escape(config)}:10:1: --cluster: no cluster red under clusters$`));
  await usage(t, ['--config', config, 'shared'], /^fencectl channel: node shared is in clusters green, blue: say which with --cluster$/);
  const off = tenancy({ green: { 'g-1': 'green-vm1' } }, undefined);
  await usage(t, ['--config', off, 'g-1'], new RegExp(`^fencectl channel: ${escape(off)}:7:3: broker\\.fence_virt\\.channels is not configured: the serial channel door is off`));
  const long = tenancy({ green: { 'g-1': 'v'.repeat(60) } }, `{ dir: /run/${'d'.repeat(50)} }`);
  await usage(t, ['--config', long, 'g-1'], new RegExp(`^fencectl channel: ${escape(long)}:9:\\d+: the socket path /run/d+/v+\\.sock is 121 bytes, longer than a UNIX socket path can be \\(107\\)`));
  // With --cluster the shared name is found; the snippet names that cluster's domain.
  const blue = await fencectl(['channel', '--config', config, '--cluster', 'blue', '--xml', 'shared']);
  t.is(blue.exitCode, 0, String(blue.stderr));
  t.regex(String(blue.stdout), /path='\/run\/fence-broker\/channels\/blue-vm\.sock'/);
});

test('channels need the virsh toolstack: with sim or xl the config is refused, located at the channels key (exit 2)', async (t) => {
  for (const toolstack of ['{ type: sim, state: sim.json }', '{ type: xl }']) {
    const config = tenancy({ green: { 'g-1': 'green-vm1' } }, '{ dir: /run/fence-broker/channels }', toolstack);
    const r = await fencectl(['channel', '--config', config, 'g-1']);
    t.is(r.exitCode, 2, String(r.stderr));
    // The wording is the config's (broker/config/crosscheck.ts); what it must say: where, what is needed, what was found.
    t.regex(String(r.stderr), new RegExp(`${escape(config)}:9:5: broker\\.fence_virt\\.channels.* toolstack type virsh\\b.*\\b${toolstack.includes('sim') ? 'sim' : 'xl'}\\b`));
  }
  const relative = tenancy({ green: { 'g-1': 'green-vm1' } }, '{ dir: channels }');
  const r = await fencectl(['channel', '--config', relative, 'g-1']);
  t.is(r.exitCode, 2);
  t.regex(String(r.stderr), /:9:\d+: .*broker\.fence_virt\.channels\.dir.*(is not an absolute path|\^\/)/, 'the relative dir is refused, located');
});

test('--help shows the operand and the options; fencectl --help lists the command', async (t) => {
  const help = await fencectl(['channel', '--help']);
  t.is(help.exitCode, 0);
  t.regex(String(help.stdout), /^usage: fencectl channel \[--config FILE\] \[--cluster CLUSTER\] \[--xml\] NODE$/m);
  t.regex(String(help.stdout), /^operands:\n {2}NODE {2}The node, as named under clusters\.CLUSTER\.nodes$/m);
  t.regex(String((await fencectl(['--help'])).stdout), /^ {2}channel +A node's serial channel/m);
  const pcmk = await fencectl(['pacemaker', '--help']);
  t.regex(String(pcmk.stdout), /\[--serial \[DEVICE\]\]/);
  t.regex(String(pcmk.stdout), /--serial \[DEVICE\] +With fence_virt/);
  t.regex(String(pcmk.stdout).replace(/\s+/g, ' '), /\(DEVICE left out: \/dev\/ttyS1\)/);
});
