// The sh face through cluster-glue's real `stonith` CLI, on a "node" without
// Node.js: a private mount namespace (unshare -m) where /dev/null covers the
// node binary and the plugin folder holds only the sh face as
// external/fence-broker. -S, -l, -T off and -T reset against the real daemon;
// the parameters as name=value, and positionally (-p) as Heartbeat gives them.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { copyFileSync, chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../common/paths.js';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { tempDir } from '../helpers.js';

const EXTERNAL_DIR = '/usr/lib/stonith/plugins/external';

async function whyMissing(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'mount namespaces need root';
  if (!existsSync(EXTERNAL_DIR)) return 'cluster-glue is not installed';
  for (const bin of ['stonith', 'unshare', 'ssh', 'node']) {
    if ((await execa('sh', ['-c', `command -v ${bin}`], { reject: false })).exitCode !== 0) return `${bin} is not installed`;
  }
  return undefined;
}
const missing = await whyMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs root, cluster-glue's stonith and unshare: ${missing}`);
if (missing) console.error(`sh face stonith tests skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest.serial) as TestFn;

let d: Daemon;
let plugins: string;
anyTest.before(async () => {
  if (missing) return;
  d = await startDaemon({
    clusters: { blue: { domains: ['blue-1', 'blue-2', 'Blue-Caps'], nodes: { 'blue-1': 'blue-1' } }, red: { domains: ['red-1'], nodes: { 'red-a': 'red-1' } } },
    simDomains: { 'blue-1': 'running', 'blue-2': 'running', 'Blue-Caps': 'running', 'red-1': 'running' },
  });
  plugins = tempDir('fb-shplugins-');
  copyFileSync(projectPath('plugin', 'external', 'fence-broker.sh'), join(plugins, 'fence-broker'));
  chmodSync(join(plugins, 'fence-broker'), 0o755);
  chmodSync(plugins, 0o755);
});
anyTest.after.always(async () => {
  if (!missing) await d?.stop();
});

/** `stonith ARGS` on a node without Node.js, where external/fence-broker is the sh face. */
async function stonithNoNode(args: string[]) {
  const script = 'mount --bind /dev/null "$(command -v node)" && mount --bind "$1" "$2" && shift 2 && exec stonith "$@"';
  const r = await execa('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', plugins, EXTERNAL_DIR, ...args], { reject: false, timeout: 120_000 });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const named = (node: string) => [`ip=127.0.0.1:${d.port}`, `identity_file=${d.key(node)}`, `host_key_fingerprint=${d.fingerprint}`, `known_hosts_file=${d.knownHosts}`, 'login_timeout=30', 'broker_timeout=60'];

test('no Node.js there: the namespace really has none, and stonith finds the sh face', async (t) => {
  const r = await execa('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind /dev/null "$(command -v node)" && node -e 0'], { reject: false });
  t.not(r.exitCode, 0);
  const n = await stonithNoNode(['-t', 'external/fence-broker', '-n']);
  t.is(n.exitCode, 0, n.stderr);
  t.regex(n.stdout, /ip +ipport +username +identity_file +host_key_fingerprint +broker_timeout +login_timeout/);
});

test('stonith -S, -l, -T off and -T reset through the sh face; a foreign domain is refused', async (t) => {
  const p = named('blue-1');
  const s = await stonithNoNode(['-t', 'external/fence-broker', ...p, '-S']);
  t.is(s.exitCode, 0, s.stderr);
  const l = await stonithNoNode(['-t', 'external/fence-broker', ...p, '-l']);
  t.is(l.exitCode, 0, l.stderr);
  t.deepEqual(l.stdout.trim().split(/\s+/), ['Blue-Caps', 'blue-1', 'blue-2']);
  const before = d.audit().length;
  const off = await stonithNoNode(['-t', 'external/fence-broker', ...p, '-T', 'off', 'blue-2']);
  t.is(off.exitCode, 0, off.stderr);
  t.is(d.sim()['blue-2'], 'shut off');
  // cluster-glue lower-cases Blue-Caps; the sh face maps it back from the list.
  const caps = await stonithNoNode(['-t', 'external/fence-broker', ...p, '-T', 'off', 'Blue-Caps']);
  t.is(caps.exitCode, 0, caps.stderr);
  t.is(d.sim()['Blue-Caps'], 'shut off');
  const reset = await stonithNoNode(['-t', 'external/fence-broker', ...p, '-T', 'reset', 'blue-2']);
  t.is(reset.exitCode, 0, reset.stderr);
  t.is(d.sim()['blue-2'], 'running');
  const lines = d.audit().slice(before);
  t.deepEqual(lines.filter((l) => l.action !== 'gethosts').map((l) => `${l.action} ${l.target} ${l.decision}`), ['off blue-2 allow', 'off Blue-Caps allow', 'reset blue-2 allow']);
  const foreign = await stonithNoNode(['-t', 'external/fence-broker', ...p, '-T', 'off', 'red-1']);
  t.not(foreign.exitCode, 0);
  t.is(d.sim()['red-1'], 'running');
});

test('positionally (-p), as Heartbeat\'s stonith_host gives them: the 7 values, the known_hosts file beside the key', async (t) => {
  const key = join(tempDir('fb-shkey-'), 'fence-broker.key');
  copyFileSync(d.key('red-a'), key);
  chmodSync(key, 0o600);
  writeFileSync(`${key}.known_hosts`, (await execa('cat', [d.knownHosts])).stdout + '\n');
  const values = `127.0.0.1 ${d.port} fence ${key} ${d.fingerprint} 60 30`;
  const l = await stonithNoNode(['-t', 'external/fence-broker', '-p', values, '-l']);
  t.is(l.exitCode, 0, l.stderr);
  t.is(l.stdout.trim(), 'red-1');
  t.is((await stonithNoNode(['-t', 'external/fence-broker', '-p', values, '-S'])).exitCode, 0);
});
