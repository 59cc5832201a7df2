// fencectl and fence-broker as an admin meets them (issue 22): --help for
// every command and --version from the release; an error is itself and one
// line pointing to --help; one key path in every command's output; the pin
// from `fingerprint`; `check` warns (exit 0) about the example's placeholder
// keys and domains no node stands for; `pacemaker` names what it skipped;
// --ip for a broker listening on a wildcard. Through the real CLIs.
import test from 'ava';
import { execa } from 'execa';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../../common/paths.js';
import { NODE_KEY_PATH } from '../../../common/node-key.js';
import { DEFAULT_CONFIG } from '../../../common/prefix.js';
import { loadOrCreateHostKey } from '../../../broker/doors/ssh.js';
import { FENCECTL } from '../../../broker/admin/commands.js';
import { live } from '../../../broker/admin/cli.js';
import { fenceBroker, fencectl, newPublicKey, tempDir } from '../../helpers.js';

const VERSION = (JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string }).version;
/** web-1's placeholder key in the example config install.sh installs. */
const PLACEHOLDER = /web-1: \{ key: "([^"]+)"/.exec(readFileSync(projectPath('contrib', 'clusters.example.yaml'), 'utf8'))?.[1] as string;

/** A host: listen on LISTEN; web-1 has the example's placeholder key, web-2 a real one, web-3 no node at all. */
function host(listen = '0.0.0.0:2222', withHostKey = true): { config: string; fingerprint?: string } {
  const dir = tempDir('fb-cli-');
  const config = join(dir, 'clusters.yaml');
  writeFileSync(
    config,
    [
      'broker:',
      `  listen: ${listen}`,
      '  host_key: host_ed25519',
      '  toolstack: { type: sim, state: sim.json }',
      '  audit_log: audit.jsonl',
      'clusters:',
      '  web:',
      '    domains: [web-1, web-2, web-3]',
      '    nodes:',
      `      web-1: { key: "${PLACEHOLDER}" }`,
      `      web-2: { key: "${newPublicKey('web-2')}" }`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return { config, ...(withHostKey ? { fingerprint: loadOrCreateHostKey(join(dir, 'host_ed25519')).fingerprint } : {}) };
}

const lines = (s: unknown): string[] => String(s).trim().split('\n');

test('--help for fencectl, every command and fence-broker; --version reads the release', async (t) => {
  const top = await fencectl(['--help']);
  t.is(top.exitCode, 0);
  for (const c of live(FENCECTL.commands)) {
    t.regex(String(top.stdout), new RegExp(`^  ${c.name} +\\S`, 'm'), `fencectl --help lists ${c.name}`);
    const help = await fencectl([c.name, '--help']);
    t.is(help.exitCode, 0, `${c.name} --help: ${String(help.stderr)}`);
    t.regex(String(help.stdout), new RegExp(`^usage: fencectl ${c.name} `), c.name);
    t.is(String(help.stderr), '');
    t.is(String((await fencectl(['help', c.name])).stdout), String(help.stdout), `fencectl help ${c.name}`);
  }
  // --help wins over whatever else is on the line: nothing runs.
  t.is((await fencectl(['keygen', '--cluster', 'x', '--help'])).exitCode, 0);
  const daemon = await fenceBroker(['--help']);
  t.is(daemon.exitCode, 0);
  t.regex(String(daemon.stdout), /^usage: fence-broker --config FILE/);
  t.is(String((await fencectl(['--version'])).stdout), `fencectl (fence-broker) ${VERSION}`);
  const v = await fenceBroker(['--version']);
  t.is(v.exitCode, 0, String(v.stderr));
  t.is(String(v.stdout), `fence-broker ${VERSION}`);
});

test('an error prints itself and one line pointing to --help (exit 2); --admin is gone, --as-admin is the one spelling', async (t) => {
  const cases: [string[], RegExp, string, (a: string[]) => Promise<{ exitCode?: number; stderr: unknown }>][] = [
    [['keygen', '--bogus'], /^fencectl keygen: Unknown option '--bogus'/, "Try 'fencectl keygen --help'.", fencectl],
    [['keygen', '--cluster', 'web'], /^fencectl keygen: --node NODE is required$/, "Try 'fencectl keygen --help'.", fencectl],
    [['heartbeat', '--cluster', 'web', '--face', 'perl'], /^fencectl heartbeat: --face: "perl" is not one of node, sh$/, "Try 'fencectl heartbeat --help'.", fencectl],
    [['explain', '--admin', 'ops', '--action', 'list'], /^fencectl explain: Unknown option '--admin'/, "Try 'fencectl explain --help'.", fencectl],
    [['frobnicate'], /^fencectl: unknown command "frobnicate"$/, "Try 'fencectl --help'.", fencectl],
    [[], /^fencectl: no command given$/, "Try 'fencectl --help'.", fencectl],
    [['--bogus'], /^fence-broker: Unknown option '--bogus'/, "Try 'fence-broker --help'.", fenceBroker],
    [[], /^fence-broker: --config FILE is required$/, "Try 'fence-broker --help'.", fenceBroker],
  ];
  for (const [args, first, last, run] of cases) {
    const r = await run(args);
    t.is(r.exitCode, 2, args.join(' '));
    t.is(lines(r.stderr).length, 2, `${args.join(' ')}: ${String(r.stderr)}`);
    t.regex(lines(r.stderr)[0] as string, first);
    t.is(lines(r.stderr)[1], last);
  }
  // --as-admin works where --admin did.
  const { config } = host('127.0.0.1:2222');
  const asAdmin = await fencectl(['explain', '--config', config, '--as', 'web/web-2', '--action', 'list']);
  t.is(asAdmin.exitCode, 0, String(asAdmin.stderr));
});

test('check defaults --config like every other command', async (t) => {
  const r = await fencectl(['check']);
  t.notRegex(String(r.stderr), /--config FILE is required/);
  t.true(String(r.stderr).includes(DEFAULT_CONFIG) || String(r.stdout).includes(DEFAULT_CONFIG), String(r.stderr));
});

test('fingerprint prints the host key pin; without a host key it says who makes one', async (t) => {
  const { config, fingerprint } = host();
  const r = await fencectl(['fingerprint', '--config', config]);
  t.is(r.exitCode, 0, String(r.stderr));
  t.is(String(r.stdout), String(fingerprint));
  const none = host('0.0.0.0:2222', false);
  const missing = await fencectl(['fingerprint', '--config', none.config]);
  t.is(missing.exitCode, 2);
  t.regex(lines(missing.stderr)[0] as string, /host key .*host_ed25519 does not exist: install\.sh creates it, as does the broker's first start/);
});

test('check warns, located and with exit 0, about the placeholder key and the domain no node stands for; a clean config gets no warning', async (t) => {
  const { config } = host();
  const r = await fencectl(['check', '--config', config]);
  t.is(r.exitCode, 0, String(r.stderr));
  t.regex(String(r.stdout), /: ok: 1 clusters, 3 domains, 2 nodes/);
  const warnings = lines(r.stderr);
  t.is(warnings.length, 2, String(r.stderr));
  t.regex(warnings[0] as string, new RegExp(`^${config}:10:\\d+: warning: node web/web-1 has the example config's placeholder key SHA256:\\S+, whose private half was discarded: make its key with \`fencectl keygen --cluster web --node web-1\`$`));
  t.regex(warnings[1] as string, new RegExp(`^${config}:8:\\d+: warning: domain web-3 of cluster web is no node's own domain: .*fencectl keygen --cluster web --node web-3`));
  // The example config itself: every key is a placeholder.
  const example = await fencectl(['check', '--config', projectPath('contrib', 'clusters.example.yaml')]);
  t.is(example.exitCode, 0, String(example.stderr));
  t.is(lines(example.stderr).filter((l) => l.includes('placeholder key')).length, 3, String(example.stderr));
  // Clean: real keys, every domain a node's own.
  const clean = readFileSync(config, 'utf8').replace(PLACEHOLDER, newPublicKey('web-1')).replace('[web-1, web-2, web-3]', '[web-1, web-2]');
  writeFileSync(config, clean);
  const ok = await fencectl(['check', '--config', config]);
  t.is(ok.exitCode, 0);
  t.is(String(ok.stderr), '');
});

test('pacemaker and heartbeat: --ip for a wildcard listen address; skipped domains named; every command prints the one key path', async (t) => {
  const { config, fingerprint } = host();
  const refused = await fencectl(['pacemaker', '--config', config, '--cluster', 'web']);
  t.is(refused.exitCode, 2);
  t.regex(lines(refused.stderr)[0] as string, /broker\.listen is 0\.0\.0\.0: give the nodes an address they reach with --ip ADDR/);
  const cib = await fencectl(['pacemaker', '--config', config, '--cluster', 'web', '--ip', '192.0.2.7']);
  t.is(cib.exitCode, 0, String(cib.stderr));
  t.is((String(cib.stdout).match(/value="192\.0\.2\.7:2222"/g) ?? []).length, 2, 'one device per node, each at --ip with listen\'s port');
  t.is((String(cib.stdout).match(new RegExp(`name="identity_file" value="${NODE_KEY_PATH}"`, 'g')) ?? []).length, 2);
  t.true(String(cib.stdout).includes(`value="${fingerprint}"`));
  t.is(lines(cib.stderr).length, 1, String(cib.stderr));
  t.regex(String(cib.stderr), /^fencectl pacemaker: skipped domain web-3: no node of cluster web with a key has it as its own domain/);
  const v6 = await fencectl(['pacemaker', '--config', config, '--cluster', 'web', '--ip', 'fd00::7', '--format', 'pcs']);
  t.is(v6.exitCode, 0, String(v6.stderr));
  t.regex(String(v6.stdout), /ip='\[fd00::7\]:2222'/);
  for (const bad of ['0.0.0.0', 'a b', 'host:22', '-x']) {
    const r = await fencectl(['pacemaker', '--config', config, '--cluster', 'web', `--ip=${bad}`]);
    t.is(r.exitCode, 2, bad);
    t.regex(lines(r.stderr)[0] as string, /--ip: /, bad);
  }
  const hb = await fencectl(['heartbeat', '--config', config, '--cluster', 'web', '--ip', '192.0.2.7']);
  t.is(hb.exitCode, 0, String(hb.stderr));
  t.is(String(hb.stdout), `stonith_host * external/fence-broker 192.0.2.7 2222 fence ${NODE_KEY_PATH} ${fingerprint} 45 5`);
  const kg = await fencectl(['keygen', '--config', config, '--cluster', 'web', '--node', 'web-3', '--out', tempDir('fb-cli-keys-')]);
  t.is(kg.exitCode, 0, String(kg.stderr));
  t.regex(String(kg.stdout), new RegExp(`install \\S+ as ${NODE_KEY_PATH} \\(0600\\)`));
  t.regex(String(kg.stdout), new RegExp(`^  identity_file=${NODE_KEY_PATH}$`, 'm'));
  t.regex(String(kg.stdout), new RegExp(`^  host_key_fingerprint=${fingerprint?.replace(/[+/]/g, '\\$&')}$`, 'm'));
});

test("the plugin's identity_file defaults to the same key path", async (t) => {
  // validate-all checks the key file without asking a broker: with no identity_file it looks where keygen said to put the key.
  const r = await execa(projectPath('plugin', 'dist', 'fence_broker'), ['-o', 'validate-all', '-n', 'web-1', '-a', '127.0.0.1:2222', '--host-key-fingerprint', `SHA256:${'A'.repeat(43)}`], { reject: false });
  if (existsSync(NODE_KEY_PATH)) t.is(r.exitCode, 0, String(r.stderr));
  else {
    t.is(r.exitCode, 1);
    t.is(String(r.stderr).trim(), `Failed: identity_file ${NODE_KEY_PATH} does not exist`);
  }
});
