// fencectl pacemaker's three forms through the real tools, for the example
// tenants and a tricky one: the CIB as printed passes crm_verify; the pcs
// script, run as printed with Debian's pcs, and the crmsh file, loaded with
// `crm configure load update`, each turn an empty offline CIB (CIB_file) into
// one that passes crm_verify and holds the same devices, parameters, monitor
// and location constraints as the CIB form.
//
// pcs and crmsh both check the agent's metadata, so they run in a private
// mount namespace whose /usr/sbin has the built plugin as fence_broker (as
// test/cluster/pacemaker-node.sh does): the host is left as it was.
import anyTest, { type TestFn, type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../../common/paths.js';
import { generateEd25519 } from '../../../broker/identity/keygen.js';
import { parseBrokers } from '../../../plugin/client.js';
import { fencectl, newPublicKey, tempDir } from '../../helpers.js';

const PLUGIN = projectPath('plugin', 'dist', 'fence_broker');

async function toolsMissing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'showing the agent to pcs and crmsh needs a mount namespace, so root';
  for (const bin of ['pcs', 'crm', 'cibadmin', 'crm_verify', 'unshare', 'mount']) {
    const r = await execa('sh', ['-c', `command -v ${bin}`], { reject: false });
    if (r.exitCode !== 0) return `${bin} is not installed (scripts/system-setup.sh installs pcs, crmsh and pacemaker-cli-utils)`;
  }
  if (!existsSync(PLUGIN)) return `${PLUGIN} is not built (node scripts/build-plugin.mjs)`;
  return undefined;
}

const missing = await toolsMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs pcs, crmsh and Pacemaker's tools for the pacemaker formats: ${missing}`);
if (missing) console.error(`pacemaker format tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest) as TestFn;

// ---- a config with its host key ---------------------------------------------

/**
 * A folder holding `yaml` as clusters.yaml and a host key at `hostKey`
 * (relative to it). fencectl pacemaker reads no policy, but every command
 * checks that the config's trusted files exist: an empty stand-in for the
 * bundle keeps this test independent of the OPA build.
 */
function tenancy(yaml: string, hostKey: string): string {
  const dir = tempDir('fb-pcmk-fmt-');
  mkdirSync(join(dir, hostKey, '..'), { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, hostKey), generateEd25519('host').private, { mode: 0o600 });
  writeFileSync(join(dir, 'unused-policy.tar.gz'), '', { mode: 0o644 });
  const withBundle = yaml.replace(/^broker:\n/m, 'broker:\n  policy_bundle: unused-policy.tar.gz\n');
  if (withBundle === yaml) throw new Error('no "broker:" line to add policy_bundle under');
  const file = join(dir, 'clusters.yaml');
  writeFileSync(file, withBundle, { mode: 0o644 });
  return file;
}

const example = (): string => tenancy(readFileSync(projectPath('clusters.yaml'), 'utf8'), '.demo/host_ed25519');

/**
 * Names the config allows that differ from their domains, an IPv6 listen
 * address (the plugin needs it bracketed), and an identity file path holding
 * everything sh and crmsh treat specially.
 */
const TRICKY_IDENTITY = `/etc/fence broker/o'brien "key" $HOME #1 \\x;y*`;
const tricky = (): string =>
  tenancy(
    [
      'broker:',
      '  listen: "[fd00::1]:2222"',
      '  host_key: keys/host',
      '  toolstack: { type: sim, state: sim.json }',
      '  audit_log: audit.jsonl',
      'clusters:',
      '  green:',
      '    domains: [vm.g-1, G_2, zz_9]',
      '    nodes:',
      `      g.1: { key: "${newPublicKey('g.1')}", domain: vm.g-1 }`,
      `      G_2: { key: "${newPublicKey('G_2')}" }`,
      `      a-3: { key: "${newPublicKey('a-3')}", domain: zz_9 }`,
      '',
    ].join('\n'),
    'keys/host',
  );

// ---- the CIB's fencing, normalised ------------------------------------------

interface El {
  name: string;
  attrs: Record<string, string>;
  children: El[];
}

const unescape = (s: string): string =>
  s.replace(/&(quot|apos|lt|gt|amp|#x[0-9a-fA-F]+|#[0-9]+);/g, (_, e: string) =>
    e === 'quot' ? '"' : e === 'apos' ? "'" : e === 'lt' ? '<' : e === 'gt' ? '>' : e === 'amp' ? '&' : String.fromCodePoint(e.startsWith('#x') ? parseInt(e.slice(2), 16) : Number(e.slice(1))),
  );

/** Elements and attributes of a CIB (text, comments and declarations ignored): enough for what these tools write. */
function parseXml(text: string): El {
  const root: El = { name: '#document', attrs: {}, children: [] };
  const stack = [root];
  const tag = /<!--[^]*?-->|<\?[^]*?\?>|<(\/?)([A-Za-z_][\w.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/g;
  for (const m of text.matchAll(tag)) {
    const [, close, name, attrText = '', selfClose] = m;
    if (!name) continue;
    if (close) {
      if (stack.pop()?.name !== name || stack.length === 0) throw new Error(`unbalanced </${name}> in:\n${text}`);
      continue;
    }
    const attrs = Object.fromEntries([...attrText.matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)].map((a) => [a[1] as string, unescape(a[2] ?? a[3] ?? '')]));
    const el: El = { name, attrs, children: [] };
    (stack.at(-1) as El).children.push(el);
    if (!selfClose) stack.push(el);
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack.at(-1)?.name}> in:\n${text}`);
  return root;
}

const only = (el: El, name: string): El => {
  const found = el.children.filter((c) => c.name === name);
  if (found.length !== 1) throw new Error(`<${el.name}> has ${found.length} <${name}>, expected one`);
  return found[0] as El;
};

/**
 * What Pacemaker acts on, ids the tools make up for nvpairs and ops left out:
 * each primitive's id, class, type, every child element's kind, its
 * parameters (sorted: pcs sorts them) and ops; each constraint whole.
 */
function fencingIn(cibText: string) {
  const configuration = only(only(parseXml(cibText), 'cib'), 'configuration');
  const primitives = only(configuration, 'resources').children.map((p) => ({
    element: p.name,
    id: p.attrs.id,
    class: p.attrs.class,
    type: p.attrs.type,
    sections: p.children.map((c) => c.name),
    params: p.children
      .filter((c) => c.name === 'instance_attributes')
      .flatMap((ia) => ia.children.map((nv) => `${nv.name} ${nv.attrs.name}=${nv.attrs.value}`))
      .sort(),
    ops: p.children.filter((c) => c.name === 'operations').flatMap((ops) => ops.children.map((o) => ({ element: o.name, name: o.attrs.name, interval: o.attrs.interval, timeout: o.attrs.timeout, other: Object.keys(o.attrs).filter((k) => !['id', 'name', 'interval', 'timeout'].includes(k)) }))),
  }));
  const constraints: Record<string, string | undefined>[] = only(configuration, 'constraints').children.map((c) => ({ element: c.name, ...c.attrs }));
  return { primitives: primitives.sort((a, b) => String(a.id).localeCompare(String(b.id))), constraints: constraints.sort((a, b) => String(a.id).localeCompare(String(b.id))) };
}

// ---- the real tools -----------------------------------------------------------

/** `argv` in a private mount namespace whose /usr/sbin also holds the plugin as fence_broker. */
async function withAgent(argv: string[], env: Record<string, string>) {
  const ovl = tempDir('fb-agent-ovl-');
  for (const d of ['upper', 'work']) mkdirSync(join(ovl, d));
  const script = 'mount -t overlay overlay -o "lowerdir=/usr/sbin,upperdir=$1/upper,workdir=$1/work" /usr/sbin && install -m 0755 "$2" /usr/sbin/fence_broker && shift 2 && exec "$@"';
  return execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-euc', script, 'with-agent', ovl, PLUGIN, ...argv], { env, reject: false, timeout: 120_000 });
}

async function emptyCib(file: string): Promise<void> {
  const r = await execa('cibadmin', ['--empty'], { reject: false });
  if (r.exitCode !== 0) throw new Error(`cibadmin --empty: ${r.stderr}`);
  writeFileSync(file, r.stdout);
}

async function verify(t: ExecutionContext, what: string, file: string): Promise<void> {
  const r = await execa('crm_verify', ['--xml-file', file, '-V'], { reject: false });
  t.is(r.exitCode, 0, `crm_verify on ${what} (${file}):\n${r.stdout}\n${r.stderr}\n${readFileSync(file, 'utf8')}`);
}

async function printed(t: ExecutionContext, config: string, cluster: string, extra: string[]): Promise<string> {
  const r = await fencectl(['pacemaker', '--config', config, '--cluster', cluster, ...extra]);
  t.is(r.exitCode, 0, `fencectl pacemaker ${extra.join(' ')}: ${r.stderr}`);
  return String(r.stdout);
}

/**
 * The three forms for one tenant: the CIB as printed is the reference; the
 * pcs script and the crmsh file, applied by the real tools to empty CIB files,
 * must end up the same. Returns the reference for the caller's own checks.
 */
async function threeForms(t: ExecutionContext, config: string, cluster: string, devices: number, extra: string[] = []) {
  // A space in the folder: CIB_file reaches pcs as one word.
  const dir = join(tempDir('fb-pcmk-out-'), 'a dir');
  mkdirSync(dir);

  const cib = await printed(t, config, cluster, [...extra, '--format', 'cib']);
  t.is(await printed(t, config, cluster, extra), cib, 'cib is the default format');
  writeFileSync(join(dir, 'printed.xml'), cib);
  await verify(t, 'the printed CIB', join(dir, 'printed.xml'));
  const want = fencingIn(cib);
  t.is(want.primitives.length, devices);
  t.is(want.constraints.length, devices);

  const script = join(dir, 'fencing.sh');
  writeFileSync(script, await printed(t, config, cluster, [...extra, '--format', 'pcs']));
  const pcsCib = join(dir, 'pcs.xml');
  await emptyCib(pcsCib);
  const pcs = await withAgent(['sh', script], { CIB_file: pcsCib });
  t.is(pcs.exitCode, 0, `the pcs script as printed:\n${pcs.stdout}\n${pcs.stderr}\n${readFileSync(script, 'utf8')}`);
  await verify(t, "pcs's CIB", pcsCib);
  t.deepEqual(fencingIn(readFileSync(pcsCib, 'utf8')), want, 'pcs made the same fencing as the CIB form');

  const crmFile = join(dir, 'fencing.crm');
  writeFileSync(crmFile, await printed(t, config, cluster, [...extra, '--format', 'crm']));
  const crmCib = join(dir, 'crm.xml');
  await emptyCib(crmCib);
  const crm = await withAgent(['crm', 'configure', 'load', 'update', crmFile], { CIB_file: crmCib });
  t.is(crm.exitCode, 0, `crm configure load update:\n${crm.stdout}\n${crm.stderr}\n${readFileSync(crmFile, 'utf8')}`);
  await verify(t, "crmsh's CIB", crmCib);
  t.deepEqual(fencingIn(readFileSync(crmCib, 'utf8')), want, 'crmsh made the same fencing as the CIB form');
  return want;
}

const param = (p: { params: string[] }, name: string): string | undefined =>
  p.params.find((x) => x.startsWith(`nvpair ${name}=`))?.slice(`nvpair ${name}=`.length);

test('example tenant blue (node names are domain names): cib, pcs and crm forms agree through the real tools', async (t) => {
  const want = await threeForms(t, example(), 'blue', 3);
  t.deepEqual(want.primitives.map((p) => [p.id, param(p, 'pcmk_host_list'), param(p, 'pcmk_host_map')]), [
    ['fb-blue-1', 'blue-1', 'blue-1:blue-1'],
    ['fb-blue-2', 'blue-2', 'blue-2:blue-2'],
    ['fb-blue-3', 'blue-3', 'blue-3:blue-3'],
  ]);
  t.deepEqual(want.constraints.map((c) => [c.rsc, c.node, c.score]), [['fb-blue-1', 'blue-1', '-INFINITY'], ['fb-blue-2', 'blue-2', '-INFINITY'], ['fb-blue-3', 'blue-3', '-INFINITY']]);
});

test('example tenant red (VM names differ from node names): cib, pcs and crm forms agree through the real tools', async (t) => {
  const want = await threeForms(t, example(), 'red', 2, ['--identity-file', '/srv/keys/red.key']);
  t.deepEqual(want.primitives.map((p) => [p.id, param(p, 'pcmk_host_map'), param(p, 'identity_file'), param(p, 'ip')]), [
    ['fb-red-a', 'red-a:red-vm-a', '/srv/keys/red.key', '127.0.0.1:2222'],
    ['fb-red-b', 'red-b:red-vm-b', '/srv/keys/red.key', '127.0.0.1:2222'],
  ]);
});

test('tricky tenant (dots and underscores, own domain names, IPv6 broker, an identity path full of shell and crmsh specials): the forms agree', async (t) => {
  const want = await threeForms(t, tricky(), 'green', 3, ['--identity-file', TRICKY_IDENTITY]);
  t.deepEqual(want.primitives.map((p) => [p.id, param(p, 'pcmk_host_list'), param(p, 'pcmk_host_map')]), [
    ['fb-a-3', 'a-3', 'a-3:zz_9'],
    ['fb-G_2', 'G_2', 'G_2:G_2'],
    ['fb-g.1', 'g.1', 'g.1:vm.g-1'],
  ]);
  for (const p of want.primitives) {
    t.is(param(p, 'identity_file'), TRICKY_IDENTITY, 'the identity path arrives unchanged through every quoting');
    t.is(param(p, 'ip'), '[fd00::1]:2222');
  }
  // The plugin reads that address as the broker the config listens on.
  t.deepEqual(parseBrokers(String(param(want.primitives[0] as { params: string[] }, 'ip')), 1), [{ host: 'fd00::1', port: 2222 }]);
});

// ---- the stock fence_virt clients (issue 19) ---------------------------------

/** The example with the fence_virt door on: a TCP listener on a host-only address (and a wildcard), and the multicast listener with its defaults. */
const exampleFenceVirt = (fenceVirt = ['  fence_virt:', '    key_dir: fence-virt-keys', '    listen: ["0.0.0.0:1229", "192.0.2.10:1229"]', '    hash: sha512', '    multicast: {}']): string =>
  tenancy(readFileSync(projectPath('clusters.yaml'), 'utf8').replace(/^broker:\n/m, `broker:\n${fenceVirt.join('\n')}\n`), '.demo/host_ed25519');

test('fence_xvm devices for tenant blue: cib, pcs and crm forms agree through the real tools; the multicast group, key file and hashes from broker.fence_virt', async (t) => {
  const want = await threeForms(t, exampleFenceVirt(), 'blue', 3, ['--agent', 'fence_xvm']);
  t.deepEqual(want.primitives.map((p) => [p.id, p.type, param(p, 'pcmk_host_list'), param(p, 'pcmk_host_map')]), [
    ['fxvm-blue-1', 'fence_xvm', 'blue-1', 'blue-1:blue-1'],
    ['fxvm-blue-2', 'fence_xvm', 'blue-2', 'blue-2:blue-2'],
    ['fxvm-blue-3', 'fence_xvm', 'blue-3', 'blue-3:blue-3'],
  ]);
  for (const p of want.primitives) {
    t.deepEqual(
      ['multicast_address', 'ipport', 'key_file', 'hash', 'auth'].map((k) => param(p, k)),
      ['225.0.0.12', '1229', '/etc/cluster/fence_xvm.key', 'sha512', 'sha256'],
      'the IPv4 group fence_xvm defaults to, the broker\'s minimum hash and its challenge hash',
    );
    t.is(param(p, 'identity_file'), undefined);
  }
  t.deepEqual(want.constraints.map((c) => [c.id, c.rsc, c.node, c.score]), [
    ['fxvm-blue-1-not-on-blue-1', 'fxvm-blue-1', 'blue-1', '-INFINITY'],
    ['fxvm-blue-2-not-on-blue-2', 'fxvm-blue-2', 'blue-2', '-INFINITY'],
    ['fxvm-blue-3-not-on-blue-3', 'fxvm-blue-3', 'blue-3', '-INFINITY'],
  ]);
});

test('fence_virt devices for tenant red (VM names differ from node names): the forms agree; the first TCP listener the nodes can reach, the key file given', async (t) => {
  const want = await threeForms(t, exampleFenceVirt(), 'red', 2, ['--agent', 'fence_virt', '--key-file', '/etc/cluster/red node.key']);
  t.deepEqual(want.primitives.map((p) => [p.id, p.type, param(p, 'pcmk_host_map'), param(p, 'ipaddr'), param(p, 'ipport'), param(p, 'key_file')]), [
    ['fvirt-red-a', 'fence_virt', 'red-a:red-vm-a', '192.0.2.10', '1229', '/etc/cluster/red node.key'],
    ['fvirt-red-b', 'fence_virt', 'red-b:red-vm-b', '192.0.2.10', '1229', '/etc/cluster/red node.key'],
  ]);
});

anyTest('--agent: an unknown agent, a door that is off, and nowhere the nodes can reach are usage errors (exit 2) that say which', async (t) => {
  const bogus = await fencectl(['pacemaker', '--cluster', 'blue', '--agent', 'fence_ipmilan']);
  t.is(bogus.exitCode, 2);
  t.regex(String(bogus.stderr), /--agent: "fence_ipmilan" is not one of fence_broker, fence_xvm, fence_virt/);
  const off = await fencectl(['pacemaker', '--config', example(), '--cluster', 'blue', '--agent', 'fence_xvm']);
  t.is(off.exitCode, 2);
  t.regex(String(off.stderr), /broker\.fence_virt is not configured/);
  const tcpOnly = exampleFenceVirt(['  fence_virt:', '    key_dir: fence-virt-keys', '    listen: ["0.0.0.0:1229"]']);
  const noMulticast = await fencectl(['pacemaker', '--config', tcpOnly, '--cluster', 'blue', '--agent', 'fence_xvm']);
  t.is(noMulticast.exitCode, 2);
  t.regex(String(noMulticast.stderr), /broker\.fence_virt\.multicast is not configured/);
  const wildcard = await fencectl(['pacemaker', '--config', tcpOnly, '--cluster', 'blue', '--agent', 'fence_virt']);
  t.is(wildcard.exitCode, 2);
  t.regex(String(wildcard.stderr), /only wildcard addresses \(0\.0\.0\.0\)/);
  const relative = await fencectl(['pacemaker', '--cluster', 'blue', '--agent', 'fence_xvm', '--key-file', 'fence_xvm.key']);
  t.is(relative.exitCode, 2);
  t.regex(String(relative.stderr), /--key-file: "fence_xvm.key" is not an absolute path/);
});

anyTest('an unknown --format or an identity file that is no absolute path is a usage error (exit 2) that says which', async (t) => {
  const format = await fencectl(['pacemaker', '--cluster', 'blue', '--format', 'xml']);
  t.is(format.exitCode, 2);
  t.regex(String(format.stderr), /--format: "xml" is not one of cib, pcs, crm/);
  t.is(String(format.stderr).trim().split('\n').at(-1), "Try 'fencectl pacemaker --help'.", 'the error, then one line pointing to --help; no usage dump');
  t.is(String(format.stderr).trim().split('\n').length, 2);
  const help = await fencectl(['pacemaker', '--help']);
  t.is(help.exitCode, 0);
  t.regex(String(help.stdout), /fencectl pacemaker \[--config FILE\] --cluster CLUSTER \[--format cib\|pcs\|crm\]/, 'the help shows the option');
  const relative = await fencectl(['pacemaker', '--cluster', 'blue', '--identity-file', 'id_ed25519']);
  t.is(relative.exitCode, 2);
  t.regex(String(relative.stderr), /--identity-file: "id_ed25519" is not an absolute path/);
  const newline = await fencectl(['pacemaker', '--cluster', 'blue', '--identity-file', '/etc/a\nb']);
  t.is(newline.exitCode, 2);
  t.regex(String(newline.stderr), /without control characters/);
});

// ---- fence_virt through the nodes' serial channels (issue 20) -----------------

/** The example on libvirt (channels need virsh) with the serial channel door on, in `mode`. */
const exampleChannels = (mode = 'serial'): string =>
  tenancy(
    readFileSync(projectPath('clusters.yaml'), 'utf8')
      .replace(/^ {2}toolstack:\n(?: {4}.*\n)+/m, '  toolstack: { type: virsh, uri: "qemu:///system" }\n')
      .replace(/^broker:\n/m, `broker:\n  fence_virt:\n    key_dir: fence-virt-keys\n    channels: { dir: /run/fence-broker/channels, mode: ${mode} }\n`),
    '.demo/host_ed25519',
  );

test('fence_virt --serial devices for tenant red: the forms agree through the real tools; serial_device, and no key, address or port', async (t) => {
  const want = await threeForms(t, exampleChannels(), 'red', 2, ['--agent', 'fence_virt', '--serial']);
  t.deepEqual(want.primitives.map((p) => [p.id, p.type, param(p, 'serial_device'), param(p, 'pcmk_host_list'), param(p, 'pcmk_host_map')]), [
    ['fvserial-red-a', 'fence_virt', '/dev/ttyS1', 'red-a', 'red-a:red-vm-a'],
    ['fvserial-red-b', 'fence_virt', '/dev/ttyS1', 'red-b', 'red-b:red-vm-b'],
  ]);
  for (const p of want.primitives) for (const k of ['key_file', 'ipaddr', 'ipport', 'hash', 'auth', 'channel_address']) t.is(param(p, k), undefined, `${p.id} has no ${k}`);
  t.deepEqual(want.constraints.map((c) => [c.id, c.rsc, c.node, c.score]), [
    ['fvserial-red-a-not-on-red-a', 'fvserial-red-a', 'red-a', '-INFINITY'],
    ['fvserial-red-b-not-on-red-b', 'fvserial-red-b', 'red-b', '-INFINITY'],
  ]);
});

test('fence_virt --serial DEVICE for tenant blue: the device given, in all three forms', async (t) => {
  const want = await threeForms(t, exampleChannels(), 'blue', 3, ['--agent', 'fence_virt', '--serial', '/dev/ttyS2']);
  t.deepEqual(want.primitives.map((p) => param(p, 'serial_device')), ['/dev/ttyS2', '/dev/ttyS2', '/dev/ttyS2']);
});

test('fence_virt --serial in vmchannel mode: the devices name the guestfwd address and port, in all three forms', async (t) => {
  const want = await threeForms(t, exampleChannels('vmchannel'), 'red', 2, ['--agent', 'fence_virt', '--serial']);
  for (const p of want.primitives) {
    t.deepEqual([param(p, 'channel_address'), param(p, 'ipport'), param(p, 'serial_device'), param(p, 'key_file')], ['10.0.2.179', '1229', undefined, undefined], String(p.id));
  }
});

anyTest('--serial: without --agent fence_virt, with the channel door off, a DEVICE outside /dev, or a DEVICE in vmchannel mode is a usage error (exit 2) that says which', async (t) => {
  const cases: [string, string[], RegExp][] = [
    [exampleChannels(), ['--serial'], /--serial is for --agent fence_virt \(the stock client's serial mode\), not fence_broker/],
    [exampleChannels(), ['--agent', 'fence_xvm', '--serial'], /--serial is for --agent fence_virt .*not fence_xvm/],
    [exampleFenceVirt(), ['--agent', 'fence_virt', '--serial'], /: broker\.fence_virt\.channels is not configured: the serial channel door is off/],
    [example(), ['--agent', 'fence_virt', '--serial'], /: broker\.fence_virt\.channels is not configured/],
    [exampleChannels(), ['--agent', 'fence_virt', '--serial', 'ttyS1'], /--serial: "ttyS1" is not a device path under \/dev/],
    [exampleChannels(), ['--agent', 'fence_virt', '--serial=/dev/../etc/passwd'], /--serial: "\/dev\/\.\.\/etc\/passwd" is not a device path under \/dev/],
    [exampleChannels('vmchannel'), ['--agent', 'fence_virt', '--serial', '/dev/ttyS2'], /mode is vmchannel, where the guests connect to 10\.0\.2\.179:1229, not to a serial device/],
  ];
  for (const [config, extra, want] of cases) {
    const r = await fencectl(['pacemaker', '--config', config, '--cluster', 'red', ...extra]);
    t.is(r.exitCode, 2, `${extra.join(' ')}: ${String(r.stderr)}`);
    t.regex(String(r.stderr).split('\n')[0] as string, want, extra.join(' '));
    t.is(String(r.stderr).trim().split('\n').at(-1), "Try 'fencectl pacemaker --help'.");
  }
  // The flag alone at the end, before another option, or with = : the same devices.
  const forms = await Promise.all(
    [['--serial'], ['--serial', '--format', 'cib'], ['--serial=/dev/ttyS1']].map((s) => fencectl(['pacemaker', '--config', exampleChannels(), '--cluster', 'red', '--agent', 'fence_virt', ...s])),
  );
  for (const f of forms) t.is(f.exitCode, 0, String(f.stderr));
  t.is(String(forms[1]?.stdout), String(forms[0]?.stdout));
  t.is(String(forms[2]?.stdout), String(forms[0]?.stdout));
});
