// The sh face (plugin/external/fence-broker.sh) beside the Node face
// (plugin/cluster-glue.ts), no root needed: POSIX sh that checkbashisms and
// shellcheck -s sh pass and that dash and busybox ash run; the same
// parameters, getconfignames (a golden list: Heartbeat's positions) and
// getinfo-*; the same name verdicts as common/names.ts; against the real
// daemon, the verbs; against a HOSTILE BROKER with the pinned host key (an
// ssh2 server in this process, as test/plugin/client.test.ts builds it) and
// the real OpenSSH client, every untrustworthy reply fails safe; a broker
// with another host key is refused before anything is sent.
import test from 'ava';
import { execa } from 'execa';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { projectPath } from '../../common/paths.js';
import { nameProblem, reservedDomainProblem } from '../../common/names.js';
import { fingerprintOf } from '../../common/fingerprint.js';
import { generateEd25519 } from '../../broker/identity/keygen.js';
import { startDaemon } from '../broker-daemon.js';
import { fencectl, tempDir } from '../helpers.js';

const SH = projectPath('plugin', 'external', 'fence-broker.sh');
const NODE_FACE = projectPath('plugin', 'dist', 'external', 'fence-broker');
const SHELLS = { dash: ['dash'], 'busybox ash': ['busybox', 'sh'] } as const;
type Shell = keyof typeof SHELLS;

const tools = await Promise.all(['dash', 'busybox', 'checkbashisms', 'shellcheck', 'ssh', 'ssh-keygen'].map(async (b) => ((await execa('sh', ['-c', `command -v ${b}`], { reject: false })).exitCode === 0 ? undefined : b)));
const missing = tools.filter(Boolean);
if (missing.length && process.env.CI === 'true') throw new Error(`CI needs ${missing.join(', ')} (scripts/system-setup.sh installs them)`);
// One at a time: each runs many short processes, and the machine has two cores.
const needs = missing.length ? test.skip : test.serial;
if (missing.length) console.error(`sh face tests skipped here: ${missing.join(', ')} missing`);

/** The sh face under a shell, with exactly this environment (PATH without node's folder is enough: it never calls node). */
const sh = async (shell: Shell, argv: string[], env: Record<string, string> = {}) => {
  const [cmd, ...pre] = SHELLS[shell];
  const r = await execa(cmd as string, [...pre, SH, ...argv], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, extendEnv: false, reject: false, timeout: 120_000, stripFinalNewline: false });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
};
const nodeFace = async (argv: string[], env: Record<string, string> = {}) => {
  const r = await execa(NODE_FACE, argv, { env: { PATH: process.env.PATH ?? '', ...env }, extendEnv: false, reject: false, timeout: 120_000, stripFinalNewline: false });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
};

needs('POSIX sh: checkbashisms and shellcheck -s sh find nothing', async (t) => {
  const cb = await execa('checkbashisms', [SH], { reject: false });
  t.is(cb.exitCode, 0, String(cb.stderr) + String(cb.stdout));
  const sc = await execa('shellcheck', ['-s', 'sh', SH], { reject: false });
  t.is(sc.exitCode, 0, String(sc.stdout));
});

needs('getconfignames: the 7 positions of Heartbeat\'s stonith_host, in order, in both faces (golden)', async (t) => {
  const golden = 'ip\nipport\nusername\nidentity_file\nhost_key_fingerprint\nbroker_timeout\nlogin_timeout\n';
  t.is((await nodeFace(['getconfignames'])).stdout, golden);
  for (const shell of Object.keys(SHELLS) as Shell[]) t.is((await sh(shell, ['getconfignames'])).stdout, golden, shell);
});

needs('getinfo-* and the verbs\' usage: the sh face prints what the Node face prints, from the one option table', async (t) => {
  for (const verb of ['getinfo-xml', 'getinfo-devid', 'getinfo-devname', 'getinfo-devdescr', 'getinfo-devurl']) {
    const node = await nodeFace([verb]);
    t.is(node.exitCode, 0);
    for (const shell of Object.keys(SHELLS) as Shell[]) {
      const r = await sh(shell, [verb]);
      t.is(r.exitCode, 0, `${shell} ${verb}`);
      t.is(r.stdout, node.stdout, `${shell} ${verb}`);
    }
  }
  const xml = (await nodeFace(['getinfo-xml'])).stdout;
  t.regex(xml, /<parameter name="known_hosts_file" unique="0" required="0">/, 'named in the metadata, though not a position');
  const lint = await execa('xmllint', ['--noout', '-'], { input: xml, reject: false });
  t.is(lint.exitCode, 0, String(lint.stderr));
  for (const shell of Object.keys(SHELLS) as Shell[]) {
    t.is((await sh(shell, ['frobnicate'])).exitCode, 1, `${shell}: an unknown verb`);
    t.is((await sh(shell, [])).exitCode, 1, `${shell}: no verb`);
  }
});

needs('fence_broker --install --face sh puts the sh file where cluster-glue looks; the default face stays the Node bundle', async (t) => {
  const bundle = projectPath('plugin', 'dist', 'fence_broker');
  const external = join('usr', 'lib', 'stonith', 'plugins', 'external', 'fence-broker');
  const withSh = tempDir('fb-inst-sh-');
  const r = await execa(bundle, ['--install', '--prefix', withSh, '--face', 'sh'], { reject: false });
  t.is(r.exitCode, 0, String(r.stderr));
  t.is(readFileSync(join(withSh, external), 'utf8'), readFileSync(SH, 'utf8'));
  t.is(statSync(join(withSh, external)).mode & 0o777, 0o755);
  t.deepEqual(readFileSync(join(withSh, 'usr', 'sbin', 'fence_broker')), readFileSync(bundle), 'the fence-agents face is Node either way');
  const withNode = tempDir('fb-inst-node-');
  t.is((await execa(bundle, ['--install', '--prefix', withNode], { reject: false })).exitCode, 0);
  t.deepEqual(readFileSync(join(withNode, external)), readFileSync(bundle));
  t.is((await execa(bundle, ['--install', '--prefix', withNode, '--face', 'perl'], { reject: false })).exitCode, 2);
});

needs('host names: both faces refuse exactly what common/names.ts refuses, before any broker is asked', async (t) => {
  const key = join(tempDir(), 'id');
  writeFileSync(key, generateEd25519('n').private, { mode: 0o600 });
  const host = generateEd25519('h');
  writeFileSync(`${key}.known_hosts`, `fence-broker ${host.public}\n`);
  const fp = (await execa('ssh-keygen', ['-lf', `${key}.known_hosts`])).stdout.split(' ')[1] as string;
  // Port 1: closed, so a name that passes is refused by the connection instead, quickly.
  const env = { ip: '127.0.0.1:1', identity_file: key, host_key_fingerprint: fp, login_timeout: '5', broker_timeout: '5' };
  const cases = [
    'vm1', 'Blue-Caps', 'a.b_c:d-e', 'x-', 'a'.repeat(64), 'a'.repeat(65), '-rf', '.x', '_x', ':x', 'vm1;id', 'vm 1', 'vm1\n', 'vm1*', '$(id)', 'é', '',
    '12345', '0', '0x1F', '1e3', 'domain-0', 'Domain-0', 'DOMAIN-0', 'Domain-01', 'xDomain-0',
    '66081d44-8fad-401b-8961-0aca60a55c87', '66081d448fad401b89610aca60a55c87', '66-08-1d-44-8fad401b89610aca60a55c87', '66081D44-8FAD-401B-8961-0ACA60A55C87',
    '66081d448fad401b89610aca60a55c8', '66081d448fad401b89610aca60a55c877', '66081d44-8fad-401b-8961-0aca60a55c8g',
  ];
  const refusedBeforeDialling = (stderr: string) => /: domain: /.test(stderr);
  for (const name of cases) {
    const expected = (nameProblem(name) ?? reservedDomainProblem(name)) !== undefined;
    for (const shell of Object.keys(SHELLS) as Shell[]) {
      const r = await sh(shell, ['off', name], env);
      t.is(r.exitCode, 1, `${shell} ${JSON.stringify(name)}`);
      t.is(refusedBeforeDialling(r.stderr), expected, `${shell} ${JSON.stringify(name)}: ${r.stderr}`);
    }
    const n = await nodeFace(['off', name], env);
    t.is(n.exitCode, 1);
    t.is(refusedBeforeDialling(n.stderr), expected, `Node face ${JSON.stringify(name)}: ${n.stderr}`);
  }
});

needs('against the real daemon: gethosts, status, off/on/reset with a lower-cased name mapped back, under dash and busybox ash', async (t) => {
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1', 'blue-2', 'Blue-Caps'], nodes: { 'blue-1': 'blue-1' } }, red: { domains: ['red-1'], nodes: { 'red-a': 'red-1' } } },
    simDomains: { 'blue-1': 'running', 'blue-2': 'running', 'Blue-Caps': 'running', 'red-1': 'running' },
  });
  try {
    // The daemon's known_hosts names the host as [127.0.0.1]:port: only its keys are read.
    const env = { ip: `127.0.0.1:${d.port}`, identity_file: d.key('blue-1'), host_key_fingerprint: d.fingerprint, known_hosts_file: d.knownHosts, login_timeout: '30', broker_timeout: '60' };
    for (const shell of Object.keys(SHELLS) as Shell[]) {
      const hosts = await sh(shell, ['gethosts'], env);
      t.is(hosts.exitCode, 0, hosts.stderr);
      t.is(hosts.stdout, 'Blue-Caps\nblue-1\nblue-2\n', 'the caller\'s own, sorted as the Node face sorts them');
      t.deepEqual(await sh(shell, ['status'], env), { exitCode: 0, stdout: '', stderr: '' });
      const before = d.audit().length;
      const off = await sh(shell, ['off', 'blue-caps'], env);
      t.is(off.exitCode, 0, off.stderr);
      t.regex(off.stdout, /^fence-broker: off blue-caps \(Blue-Caps\): 127\.0\.0\.1:\d+: /);
      t.is(d.sim()['Blue-Caps'], 'shut off');
      const lines = d.audit().slice(before);
      t.deepEqual(lines.map((l) => `${l.action} ${l.target ?? ''} ${l.decision}`), ['gethosts  allow', 'off Blue-Caps allow'], 'one list for the mapping, one off: no refused request on the way');
      t.is((await sh(shell, ['on', 'blue-caps'], env)).exitCode, 0);
      t.is(d.sim()['Blue-Caps'], 'running');
      t.is((await sh(shell, ['reset', 'blue-2'], env)).exitCode, 0);
      const foreign = await sh(shell, ['off', 'red-1'], env);
      t.is(foreign.exitCode, 1);
      t.regex(foreign.stderr, /refused/);
      t.is(d.sim()['red-1'], 'running');
    }
    // Environment only, as Heartbeat's positions leave it: derived from identity_file when not given.
    const { known_hosts_file: _, ...positional } = env;
    const derived = await sh('dash', ['gethosts'], positional);
    t.is(derived.exitCode, 1);
    t.regex(derived.stderr, new RegExp(`cannot read known_hosts_file ${d.key('blue-1')}\\.known_hosts`));
    // What fencectl heartbeat --face sh says to install beside the key.
    const printed = await fencectl(['heartbeat', '--config', d.config, '--cluster', 'blue', '--face', 'sh', '--identity-file', d.key('blue-1')]);
    t.is(printed.exitCode, 0, String(printed.stderr));
    const [stonithHost, knownHostsLine, ...more] = String(printed.stdout).split('\n').filter((l) => l && !l.startsWith('#'));
    t.deepEqual(more, []);
    t.is(stonithHost, `stonith_host * external/fence-broker 127.0.0.1 0 fence ${d.key('blue-1')} ${d.fingerprint} 45 5`);
    t.regex(String(printed.stdout), new RegExp(`# ${d.key('blue-1')}\\.known_hosts, every node`));
    writeFileSync(`${d.key('blue-1')}.known_hosts`, `${knownHostsLine}\n`);
    t.is((await fencectl(['heartbeat', '--config', d.config, '--cluster', 'blue', '--face', 'perl'])).exitCode, 2);
    t.is((await sh('dash', ['gethosts'], positional)).exitCode, 0);

    // The Node face pins the key of the same file when it is given.
    t.is((await nodeFace(['gethosts'], env)).stdout, 'Blue-Caps\nblue-1\nblue-2\n');
  } finally {
    await d.stop();
  }
});

needs('several brokers, asked in parallel: off succeeds where one host has the domain and the other positively lacks it; an unreachable broker fails it', async (t) => {
  const d = await startDaemon({ clusters: { red: { domains: ['red-1', 'red-2'], nodes: { 'red-a': 'red-1' } } }, simDomains: { 'red-1': 'running', 'red-2': 'running' } });
  const other = await startDaemon({ clusters: { red: { domains: ['red-1', 'red-2'], nodes: { 'red-a': 'red-1' } } }, simDomains: { 'red-1': 'shut off' }, reuseKeys: { 'red-a': d.key('red-a') } });
  try {
    const knownHosts = join(tempDir(), 'known_hosts');
    writeFileSync(knownHosts, readFileSync(d.knownHosts, 'utf8') + readFileSync(other.knownHosts, 'utf8'));
    const both = { ip: `127.0.0.1:${d.port},127.0.0.1:${other.port}`, identity_file: d.key('red-a'), host_key_fingerprint: `${d.fingerprint},${other.fingerprint}`, known_hosts_file: knownHosts, login_timeout: '30', broker_timeout: '60' };
    const off = await sh('dash', ['off', 'red-2'], both);
    t.is(off.exitCode, 0, off.stderr);
    t.is(d.sim()['red-2'], 'shut off');
    t.is(other.sim()['red-2'], undefined);
    t.is((await sh('dash', ['gethosts'], both)).stdout, 'red-1\nred-2\n', 'the union, once each');
    t.is((await sh('dash', ['on', 'red-2'], both)).exitCode, 0);
    // The second host cannot be asked: the domain might run there, so no success.
    const closed = await sh('dash', ['off', 'red-2'], { ...both, ip: `127.0.0.1:${d.port},127.0.0.1:1` });
    t.is(closed.exitCode, 1);
    t.regex(closed.stderr, /127\.0\.0\.1:1: no reply/);
  } finally {
    await Promise.all([d.stop(), other.stop()]);
  }
});

interface Hostile {
  port: number;
  key: string;
  knownHosts: string;
  fingerprint: string;
  /** The reply to each exec'd command: a line of stdout (or raw bytes) and an exit status (<0: say nothing, keep the channel). */
  answer: (command: string) => { line: string; exit: number; raw?: boolean };
  connections: number;
  authentications: number;
  commands: string[];
  close(): Promise<void>;
}

async function hostileBroker(): Promise<Hostile> {
  const dir = tempDir('fb-shhostile-');
  const host = generateEd25519('hostile');
  const client = generateEd25519('node');
  writeFileSync(join(dir, 'id'), client.private, { mode: 0o600 });
  writeFileSync(join(dir, 'known_hosts'), `fence-broker ${host.public}\n`);
  const parsed = ssh2.utils.parseKey(host.private);
  if (parsed instanceof Error || Array.isArray(parsed)) throw new Error('host key');
  const state: Hostile = {
    port: 0,
    key: join(dir, 'id'),
    knownHosts: join(dir, 'known_hosts'),
    fingerprint: fingerprintOf(parsed.getPublicSSH()),
    answer: () => ({ line: '{}', exit: 0 }),
    connections: 0,
    authentications: 0,
    commands: [],
    close: async () => undefined,
  };
  const server = new ssh2.Server({ hostKeys: [host.private] }, (conn) => {
    state.connections++;
    conn.on('authentication', (ctx) => {
      state.authentications++;
      if (ctx.method === 'publickey') ctx.accept();
      else ctx.reject(['publickey']);
    });
    conn.on('ready', () =>
      conn.on('session', (accept) =>
        accept().on('exec', (acceptExec, _reject, info) => {
          state.commands.push(info.command);
          const a = state.answer(info.command);
          const ch = acceptExec();
          if (a.exit < 0) return;
          ch.write(a.raw ? a.line : a.line + '\n');
          ch.exit(a.exit);
          ch.end();
        }),
      ),
    );
    conn.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.port = (server.address() as { port: number }).port;
  state.close = () => new Promise((r) => server.close(() => r()));
  return state;
}

const say = (o: Record<string, unknown>) => JSON.stringify({ message: 'hostile', request_id: 'x', ...o });
const list = (domains: unknown[]) => say({ ok: true, code: 'ok', action: 'gethosts', target: '', state: 'unknown', domains });

for (const shell of Object.keys(SHELLS) as Shell[]) {
  needs(`${shell}: a hostile broker with the pinned key cannot make the sh face report success, nor list foreign names`, async (t) => {
    const h = await hostileBroker();
    try {
      const env = { ip: `127.0.0.1:${h.port}`, identity_file: h.key, host_key_fingerprint: h.fingerprint, known_hosts_file: h.knownHosts, login_timeout: '30', broker_timeout: '30' };
      const huge = say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off', message: 'x'.repeat(2_000_000) });
      const cases: { name: string; line: string; exit?: number; raw?: boolean; why: RegExp; clocks?: boolean }[] = [
        { name: 'another target', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm2', state: 'off' }), why: /target "vm2" does not match/ },
        { name: 'another action', line: say({ ok: true, code: 'ok', action: 'on', target: 'vm1', state: 'on' }), why: /action "on" does not match/ },
        { name: 'a state off the contract', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'OFF' }), why: /state "OFF"/ },
        { name: 'ok without action and target', line: say({ ok: true, code: 'ok', state: 'off' }), why: /action \(none\) does not match/ },
        { name: 'ok with a failure code', line: say({ ok: true, code: 'failed', action: 'off', target: 'vm1', state: 'off' }), why: /ok with code failed/ },
        { name: 'ok:true with exit status 1', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }), exit: 1, why: /ok with exit status 1/ },
        { name: 'an unknown code', line: say({ ok: true, code: 'sure', action: 'off', target: 'vm1', state: 'off' }), why: /unknown code "sure"/ },
        { name: 'ok as a string', line: say({ ok: 'true', code: 'ok', action: 'off', target: 'vm1', state: 'off' }), why: /"ok" is not a boolean/ },
        { name: 'ok twice (JSON.parse would take the last)', line: say({ ok: false, code: 'ok', action: 'off', target: 'vm1', state: 'off' }).replace(/}$/, ',"ok":true}'), why: /"ok" appears twice/ },
        { name: 'the target spelt with an escape', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }).replace('"target":"vm1"', '"target":"vm\\u0031"'), why: /target "vm'0031" does not match/ },
        { name: 'a number where a string goes', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off', extra: 1 }), why: /unreadable reply/ },
        { name: 'garbage', line: 'OK, it is off', why: /unreadable reply/ },
        { name: 'a JSON array', line: '[true]', why: /unreadable reply/ },
        { name: 'two lines', line: `${say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' })}\n{}`, why: /not one line/ },
        { name: 'no newline at the end', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }), raw: true, why: /not one line/ },
        { name: 'a control character', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }).replace('hostile', 'host\x01ile'), why: /not one line of JSON text/ },
        { name: 'a NUL byte', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }).replace('hostile', 'host\x00ile'), why: /not one line of JSON text/ },
        { name: 'a huge reply (2 MB)', line: huge, why: /reply too large/ },
        { name: 'a huge reply without an end', line: huge.slice(0, -1) + 'x'.repeat(4_000_000), raw: true, why: /reply too large/ },
        { name: 'no reply (the channel stays open)', line: '', exit: -1, why: /no answer within 4 s/, clocks: true },
        { name: 'nothing at all', line: '', raw: true, why: /no reply/ },
      ];
      for (const c of cases) {
        h.answer = (command) => (command === 'gethosts' ? { line: list(['vm1']), exit: 0 } : { line: c.line, exit: c.exit ?? 0, raw: c.raw ?? false });
        const r = await sh(shell, ['off', 'vm1'], c.clocks ? { ...env, login_timeout: '2', broker_timeout: '2' } : env);
        t.is(r.exitCode, 1, `${shell}, ${c.name}: ${r.stdout}`);
        t.is(r.stdout, '', `${shell}, ${c.name}`);
        t.regex(r.stderr, c.why, `${shell}, ${c.name}`);
      }
      // A reply whose message holds a forged member stays a failure: strings are read as strings.
      h.answer = (command) => (command === 'gethosts' ? { line: list(['vm1']), exit: 0 } : { line: say({ ok: false, code: 'failed', action: 'off', target: 'vm1', state: 'on', message: '","ok":true,"code":"ok' }), exit: 1 });
      t.is((await sh(shell, ['off', 'vm1'], env)).exitCode, 1, `${shell}: forged member in a message`);

      // A list: names off the pattern are dropped with a warning; the good ones stay.
      h.answer = () => ({ line: list(['vm1', 'vm2;reboot', '-rf', '$(id)', 'a,b', 'x"y', 'back\\slash', 'vm3']), exit: 0 });
      const listed = await sh(shell, ['gethosts'], env);
      t.is(listed.exitCode, 0, listed.stderr);
      t.is(listed.stdout, 'vm1\nvm3\n', shell);
      t.is(listed.stderr.split('dropped a domain name off the pattern').length - 1, 6, listed.stderr);
      h.answer = () => ({ line: say({ ok: true, code: 'ok', action: 'gethosts', target: '', state: 'unknown' }), exit: 0 });
      t.regex((await sh(shell, ['gethosts'], env)).stderr, /a list without "domains"/);

      // A trustworthy reply is believed.
      h.answer = (command) => (command === 'gethosts' ? { line: list(['vm1']), exit: 0 } : { line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }), exit: 0 });
      const good = await sh(shell, ['off', 'vm1'], env);
      t.is(good.exitCode, 0, good.stderr);
    } finally {
      await h.close();
    }
  });
}

needs('host key pinning: another host key is refused before anything is sent; a known_hosts file that disagrees with the fingerprint, before dialling', async (t) => {
  const h = await hostileBroker();
  try {
    h.answer = () => ({ line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }), exit: 0 });
    // Another key, pinned consistently (file and fingerprint agree): ssh sees a different host key.
    const other = generateEd25519('other');
    const otherFile = join(tempDir(), 'known_hosts');
    writeFileSync(otherFile, `fence-broker ${other.public}\n`);
    const otherFp = (await execa('ssh-keygen', ['-lf', otherFile])).stdout.split(' ')[1] as string;
    const env = { ip: `127.0.0.1:${h.port}`, identity_file: h.key, host_key_fingerprint: otherFp, known_hosts_file: otherFile, login_timeout: '30', broker_timeout: '30' };
    for (const shell of Object.keys(SHELLS) as Shell[]) {
      const r = await sh(shell, ['off', 'vm1'], env);
      t.is(r.exitCode, 1);
      t.regex(r.stderr, /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
    }
    t.true(h.connections > 0, 'it did dial');
    t.is(h.authentications, 0, 'no key was offered');
    t.deepEqual(h.commands, [], 'nothing was sent');

    // The broker's real key in the file, but the fingerprint pins the other: refused before dialling.
    const before = h.connections;
    for (const shell of Object.keys(SHELLS) as Shell[]) {
      const r = await sh(shell, ['off', 'vm1'], { ...env, known_hosts_file: h.knownHosts });
      t.is(r.exitCode, 1);
      t.regex(r.stderr, /holds key SHA256:\S+, which is not among host_key_fingerprint/);
    }
    const node = await nodeFace(['off', 'vm1'], { ...env, known_hosts_file: h.knownHosts });
    t.is(node.exitCode, 1);
    t.regex(node.stderr, /holds key SHA256:\S+, which is not among host_key_fingerprint/);
    // A missing or unusable identity file: refused before dialling too.
    const garbage = join(tempDir(), 'id');
    writeFileSync(garbage, 'not a key\n', { mode: 0o600 });
    for (const identity_file of [join(tempDir(), 'absent'), garbage]) {
      const r = await sh('dash', ['off', 'vm1'], { ...env, host_key_fingerprint: h.fingerprint, known_hosts_file: h.knownHosts, identity_file });
      t.is(r.exitCode, 1);
      t.regex(r.stderr, /identity file/);
    }
    t.is(h.connections, before, 'no face dialled');
    // The Node face given a file with the other key: it pins that key, so the broker is refused.
    const pinnedOther = await nodeFace(['off', 'vm1'], { ...env, host_key_fingerprint: `${h.fingerprint},${otherFp}` });
    t.is(pinnedOther.exitCode, 1);
    t.regex(pinnedOther.stderr, /does not match the pinned/);
    t.deepEqual(h.commands, []);
  } finally {
    await h.close();
  }
});
