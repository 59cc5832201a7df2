// The fence-agents face, called directly (no root, nothing installed): one
// option table behind stdin, flags, metadata and --help; fence-agents'
// standard options accepted without warnings; the metadata compared with a
// golden file (UPDATE_GOLDEN=1 rewrites it) and validated against
// fence-agents' metadata.rng; and fence-agents' delay check, with the bundled
// agent against the real daemon.
import test from 'ava';
import { execa } from 'execa';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { projectPath } from '../../common/paths.js';
import { fenceAgents, metadataXml, parseStdin, VERSION } from '../../plugin/fence-agents.js';
import { OPTIONS } from '../../plugin/options.js';
import { startDaemon } from '../broker-daemon.js';

const GOLDEN = projectPath('test', 'golden', 'fence_broker.metadata.xml');
const RNG = '/usr/share/cluster/relaxng/metadata.rng';

const call = async (argv: string[], stdin = '') => {
  let out = '';
  let err = '';
  const code = await fenceAgents(argv, async () => stdin, (s) => void (out += s), (s) => void (err += s));
  return { code, out, err };
};

test('metadata: the golden file, every option of the table once (port as plug\'s deprecated alias), valid against metadata.rng', async (t) => {
  const xml = metadataXml();
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(GOLDEN, xml);
  t.is(xml, readFileSync(GOLDEN, 'utf8'), 'metadata differs from test/golden/fence_broker.metadata.xml (UPDATE_GOLDEN=1 after a reviewed change)');
  for (const o of OPTIONS) t.is(xml.split(`<parameter name="${o.name}" `).length - 1, 1, o.name);
  t.regex(xml, /<parameter name="port" unique="0" required="1" deprecated="1">/);
  if (!existsSync(RNG)) {
    if (process.env.CI === 'true') t.fail(`${RNG} missing (fence-agents is installed by scripts/system-setup.sh)`);
    else t.log(`${RNG} not here; validation skipped`);
    return;
  }
  const lint = await execa('xmllint', ['--noout', '--relaxng', RNG, '-'], { input: xml, reject: false });
  t.is(lint.exitCode, 0, lint.stderr);
});

test('fence-agents\' standard options on stdin: accepted without a warning; an unknown one warns', (t) => {
  const warnings: string[] = [];
  const v = parseStdin(
    ['action=off', 'port=vm1', 'delay=3', 'power_timeout=20', 'power_wait=1', 'login_timeout=4', 'retry_on=2', 'verbose=1', 'debug_file=/tmp/x', 'quiet=0', 'plug_separator=,', 'separator=;', 'nodename=n1', 'ipaddr=h', 'login=fence', 'colour=blue'].join('\n'),
    (s) => void warnings.push(s),
  );
  t.like(v, { action: 'off', plug: 'vm1', delay: '3', broker_timeout: '20', power_wait: '1', login_timeout: '4', retry_on: '2', verbose: '1', separator: ';', ip: 'h', username: 'fence' });
  t.deepEqual(warnings, ["WARNING: Parse error: Ignoring unknown option 'colour=blue'\n"]);
});

test('--help and --version; flags from the same table; a bad value is named', async (t) => {
  const help = await call(['--help']);
  t.is(help.code, 0);
  for (const o of OPTIONS) t.regex(help.out, new RegExp(`--${o.long}\\b`), o.name);
  const version = await call(['-V']);
  t.is(version.code, 0);
  t.is(version.out, `${VERSION}\n`);
  // The bundle the guests run says the release's version (put in by its build; no package.json on a guest).
  const release = (JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string }).version;
  t.is(String((await execa(projectPath('plugin', 'dist', 'fence_broker'), ['--version'])).stdout), release);
  const bad = await call(['-o', 'off', '-n', 'vm1', '-a', 'h', '-k', '/nonexistent', '--host-key-fingerprint', `SHA256:${'A'.repeat(43)}`, '--delay=-1']);
  t.is(bad.code, 1);
  t.regex(bad.err, /delay "-1" is not a number of seconds/);
  const two = await call(['-o', 'off', '-n', 'vm1,vm2', '-a', 'h', '-k', '/nonexistent', '--host-key-fingerprint', `SHA256:${'A'.repeat(43)}`]);
  t.regex(two.err, /one plug at a time/);
});

test('a reserved name (Domain-0, a bare number, UUID-shaped) is refused by the shared core before any broker is asked', async (t) => {
  // 192.0.2.1 (TEST-NET-1) is never dialled: the refusal comes first, with no key file either.
  for (const plug of ['Domain-0', '12', '6608-1d44-8fad-401b-8961-0aca-60a5-5c87']) {
    const r = await call(['-o', 'off', '-n', plug, '-a', '192.0.2.1', '-k', '/nonexistent', '--host-key-fingerprint', `SHA256:${'A'.repeat(43)}`]);
    t.is(r.code, 1, plug);
    t.regex(r.err, /domain: (Domain-0 is Xen's control domain|a bare number is a domain id|UUID-shaped)/, plug);
    t.notRegex(r.err, /identity file|nonexistent/, plug);
  }
});

test('delay=10 on stdin: the broker sees the off at least 10 s after the agent starts (fence-agents\' own delay check)', async (t) => {
  const d = await startDaemon({ clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { 'blue-1': 'blue-1' } } } });
  try {
    const stdin = [`ip=127.0.0.1:${d.port}`, `identity_file=${d.key('blue-1')}`, `host_key_fingerprint=${d.fingerprint}`, 'login_timeout=30', 'action=off', 'port=blue-2', 'delay=10', ''].join('\n');
    const t0 = Date.now();
    const r = await execa('node', [projectPath('plugin', 'dist', 'fence_broker')], { input: stdin, reject: false, timeout: 120_000 });
    t.is(r.exitCode, 0, String(r.stderr));
    const seen = Date.parse(String(d.auditAll().find((l) => l.event === 'intent' && l.target === 'blue-2')?.time));
    t.log(`the broker saw the off ${seen - t0} ms after the agent started`);
    t.true(seen - t0 >= 10_000);
    t.is(d.sim()['blue-2'], 'shut off');
  } finally {
    await d.stop();
  }
});
