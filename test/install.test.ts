// The host release (issue 11 item 6): scripts/package.mjs builds it, its
// tarball is unpacked and install.sh puts it into a fresh prefix, and the
// installed programs run as on a host that has Node and nothing else: PATH is
// a folder holding node and the few base tools install.sh uses (no opa, Go,
// npm, tsc, esbuild or C compiler), OPA is unset, the working directory is
// outside the repo, and no installed file names the repo. The installed
// fencectl checks the installed config, the installed broker serves the
// installed guest plugin (a real off, audited) and stops cleanly on SIGTERM,
// and systemd-analyze verifies the installed unit.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseDocument } from 'yaml';
import { PROJECT_ROOT, projectPath } from '../common/paths.js';
import { generateEd25519 } from '../broker/identity/keygen.js';
import { cleanup, tempDir, until, within } from './helpers.js';

const version = (JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string }).version;
const name = `fence-broker-${version}`;

/** What install.sh and the installed programs may call: node and base tools every Debian host has. */
const BASE_TOOLS = ['sh', 'sed', 'grep', 'find', 'install', 'chmod', 'mv', 'rm', 'ln', 'dirname'];
const LOGROTATE = '/usr/sbin/logrotate';
if (!existsSync(LOGROTATE) && process.env.CI === 'true') throw new Error('CI needs logrotate (scripts/system-setup.sh installs it)');
if (!existsSync(LOGROTATE)) console.error('install test: the installed logrotate config is not run here: logrotate not installed');

/** None of these may be reachable by the installed programs. */
const BUILD_TOOLS = ['opa', 'go', 'npm', 'npx', 'tsc', 'esbuild', 'cc', 'gcc', 'make', 'node-gyp'];

function whereIs(tool: string): string {
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) if (existsSync(join(dir, tool))) return join(dir, tool);
  throw new Error(`${tool} not found in /usr/bin, /bin, /usr/sbin or /sbin`);
}

/** A PATH folder of BASE_TOOLS and node (this one, another given, or none). */
function hostPath(node: string | null = process.execPath): string {
  const bin = tempDir('fb-host-bin-');
  for (const tool of BASE_TOOLS) symlinkSync(whereIs(tool), join(bin, tool));
  if (node !== null) symlinkSync(node, join(bin, 'node'));
  return bin;
}

/** The environment of a host with only Node: nothing inherited (no OPA, no repo PATH). */
const hostEnv = (bin: string, home: string): Record<string, string> => ({ PATH: bin, HOME: home, LANG: 'C.UTF-8' });

interface Installed {
  release: string;
  prefix: string;
  bin: string;
  env: Record<string, string>;
  cwd: string;
  installOutput: string;
}

async function packageAndInstall(): Promise<Installed> {
  const pack = await execa('node', [projectPath('scripts', 'package.mjs')], { reject: false, cwd: tempDir('fb-pack-cwd-') });
  if (pack.exitCode !== 0) throw new Error(`scripts/package.mjs failed (exit ${pack.exitCode}): ${pack.stderr}${pack.stdout}`);
  // From the tarball, not the folder: it must hold everything.
  const unpacked = tempDir('fb-release-');
  await execa('tar', ['-xzf', projectPath('dist', 'release', `${name}.tar.gz`), '-C', unpacked]);
  const release = join(unpacked, name);
  const prefix = tempDir('fb-prefix-');
  const bin = hostPath();
  const cwd = tempDir('fb-cwd-');
  const env = hostEnv(bin, cwd);
  const r = await execa(join(release, 'install.sh'), ['--prefix', prefix], { reject: false, env, extendEnv: false, cwd });
  if (r.exitCode !== 0) throw new Error(`install.sh --prefix ${prefix} failed (exit ${r.exitCode}): ${r.stderr}\n${r.stdout}`);
  return { release, prefix, bin, env, cwd, installOutput: `${r.stdout}\n${r.stderr}` };
}

let installing: Promise<Installed> | undefined;
const installed = (): Promise<Installed> => (installing ??= packageAndInstall());

const test = anyTest as TestFn;

/** Every path under `dir` (files, folders, symlinks), relative. */
function walk(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = rel ? `${rel}/${e.name}` : e.name;
    return e.isDirectory() ? [r, ...walk(dir, r)] : [r];
  });
}

test('the release installs into a fresh prefix and runs there without the repo, Go, opa or a compiler', async (t) => {
  const { prefix, bin, env, cwd, installOutput } = await within('package and install', installed(), 240_000);
  t.log(installOutput.trim());
  for (const tool of BUILD_TOOLS) t.false(existsSync(join(bin, tool)), `${tool} must not be on the installed programs' PATH`);
  t.regex(installOutput, /clusters\.yaml: ok: 1 clusters, 2 domains, 2 nodes, 1 admins; policy rego-[0-9a-f]{16}/, 'install.sh ends with a passing fencectl check of the example');
  // The host key, made at install as ssh-keygen -A would: the pin exists before the first start.
  const hostKey = join(prefix, 'var', 'lib', 'fence-broker', 'host_ed25519');
  const installPin = new RegExp(`host key ${hostKey} created \\(ed25519, 0600\\): (SHA256:[A-Za-z0-9+/]{43})`).exec(installOutput)?.[1];
  t.truthy(installPin, installOutput);
  t.is(lstatSync(hostKey).mode & 0o777, 0o600);
  t.is(lstatSync(hostKey).uid, process.getuid?.() ?? -1);
  t.regex(readFileSync(`${hostKey}.pub`, 'utf8'), /^ssh-ed25519 /);
  // A staging prefix: no systemctl advice, the foreground command instead; the tree knows its prefix.
  t.notRegex(installOutput, /systemctl/);
  t.true(installOutput.includes(`run it in the foreground: ${prefix}/usr/local/bin/fence-broker --config ${prefix}/etc/fence-broker/clusters.yaml`), installOutput);
  t.is(readFileSync(join(prefix, 'opt', 'fence-broker', 'INSTALL_PREFIX'), 'utf8'), `${prefix}\n`);

  // The tree: nothing names the repo, nothing is writable by group or others, private folders are private.
  const opt = join(prefix, 'opt', 'fence-broker');
  const all = walk(prefix);
  for (const rel of all) {
    const path = join(prefix, rel);
    const st = lstatSync(path);
    if (st.isSymbolicLink()) {
      t.false(readlinkSync(path).startsWith('/'), `${rel} links by a relative path`);
      continue;
    }
    t.is(st.mode & 0o022, 0, `${rel} (mode ${(st.mode & 0o777).toString(8)}) must not be writable by group or others`);
    if (st.isFile()) t.false(readFileSync(path).includes(PROJECT_ROOT), `${rel} names the repo (${PROJECT_ROOT})`);
  }
  t.true(all.length > 20, all.join('\n'));
  t.is(lstatSync(join(prefix, 'var', 'lib', 'fence-broker')).mode & 0o777, 0o700);
  t.is(lstatSync(join(prefix, 'var', 'log', 'fence-broker')).mode & 0o777, 0o750);
  t.is(lstatSync(join(prefix, 'etc', 'fence-broker', 'clusters.yaml')).mode & 0o777, 0o640);
  for (const f of ['dist/broker/main.js', 'dist/broker/fencectl.js', 'dist/policy/bundle.tar.gz', 'schema/clusters.schema.json', 'plugin/fence_broker', 'plugin/external/fence-broker', 'plugin/external/fence-broker.sh', 'THIRD-PARTY-LICENSES']) {
    t.true(existsSync(join(opt, f)), `${f} installed`);
  }
  t.false(existsSync(join(opt, 'node_modules')), 'everything is bundled: no node_modules');
  t.false(existsSync(join(opt, 'policies')), 'no Rego sources: the prebuilt bundle is what runs');
  const unit = readFileSync(join(prefix, 'lib', 'systemd', 'system', 'fence-broker.service'), 'utf8');
  // node as install.sh found it on PATH (not resolved: a managed symlink such as /usr/bin/node survives upgrades).
  t.true(unit.includes(`\nExecStart=${join(bin, 'node')} ${opt}/dist/broker/main.js --config ${prefix}/etc/fence-broker/clusters.yaml\n`), unit);
  t.true(unit.includes(`\nReadWritePaths=${prefix}/var/lib/fence-broker ${prefix}/var/log/fence-broker\n`), unit);
  const logrotate = readFileSync(join(prefix, 'etc', 'logrotate.d', 'fence-broker'), 'utf8');
  t.true(logrotate.includes(`\n${prefix}/var/log/fence-broker/audit.jsonl {\n`), logrotate);

  // The installed example, as install.sh relocated it: a real host's (virsh, paths under the prefix).
  const configFile = join(prefix, 'etc', 'fence-broker', 'clusters.yaml');
  const doc = parseDocument(readFileSync(configFile, 'utf8'));
  t.deepEqual((doc.toJS() as { broker: { toolstack: unknown } }).broker.toolstack, { type: 'virsh', uri: 'qemu:///system' });
  t.is(doc.getIn(['broker', 'host_key']), `${prefix}/var/lib/fence-broker/host_ed25519`);
  t.is(doc.getIn(['broker', 'audit_log']), `${prefix}/var/log/fence-broker/audit.jsonl`);
  // Adapted to run here: loopback port 0, the sim toolstack, a real key for web-1.
  const key = generateEd25519('web-1');
  const keyFile = join(tempDir('fb-guest-'), 'id_ed25519');
  writeFileSync(keyFile, key.private, { mode: 0o600 });
  doc.setIn(['broker', 'listen'], '127.0.0.1:0');
  doc.setIn(['broker', 'toolstack'], doc.createNode({ type: 'sim', state: `${prefix}/var/lib/fence-broker/sim.json` }));
  doc.setIn(['clusters', 'web', 'nodes', 'web-1', 'key'], key.public);
  writeFileSync(configFile, doc.toString());
  chmodSync(configFile, 0o640);

  const fencectl = join(prefix, 'usr', 'local', 'bin', 'fencectl');
  // The example's own suggestion, without --config (the default is the prefix's): a new key for a placeholder node.
  const keys = join(tempDir('fb-keys-'), 'keys');
  const keygen = await execa(fencectl, ['keygen', '--cluster', 'web', '--node', 'web-2', '--out', keys], { reject: false, env, extendEnv: false, cwd });
  t.is(keygen.exitCode, 0, String(keygen.stderr));
  t.true(String(keygen.stdout).includes(`in ${configFile}, replace the key of clusters.web.nodes.web-2`), String(keygen.stdout));
  t.true(String(keygen.stdout).includes(`host_key_fingerprint=${installPin}`), String(keygen.stdout));

  const check = await execa(fencectl, ['check', '--config', configFile], { reject: false, env, extendEnv: false, cwd });
  t.is(check.exitCode, 0, `${check.stderr}${check.stdout}`);
  const revision = /policy (rego-[0-9a-f]{16})/.exec(String(check.stdout))?.[1] ?? '(none)';
  t.regex(revision, /^rego-/, String(check.stdout));
  t.true(readFileSync(join(opt, 'RELEASE'), 'utf8').includes(`policy ${revision} `), 'fencectl loaded the bundle the release names');

  // The installed daemon: ready line, a fence from the installed plugin, SIGTERM.
  const daemon = execa(join(prefix, 'usr', 'local', 'bin', 'fence-broker'), ['--config', configFile], { reject: false, env, extendEnv: false, cwd, buffer: false, stderr: 'pipe', stdout: 'ignore' });
  let log = '';
  const ready = new Promise<string>((resolve, reject) => {
    daemon.stderr?.on('data', (b: Buffer) => {
      log += b.toString();
      const line = log.split('\n').find((l) => l.includes('"fence-broker ready"'));
      if (line) resolve(line);
    });
    void daemon.then((r) => reject(new Error(`fence-broker exited ${r.exitCode} before it was ready: ${log}`)));
  });
  try {
    const line = await within('the installed fence-broker ready', ready, 60_000, () => log);
    const readyLog = JSON.parse(line) as { listen: string; host_key: string; host_key_created: boolean; policy: string; toolstack: string };
    t.is(readyLog.host_key, installPin ?? '(none)', 'the broker serves the key install.sh made');
    t.false(readyLog.host_key_created);
    const port = Number(/:(\d+)$/.exec(readyLog.listen)?.[1]);
    t.true(port > 0, line);
    t.is(readyLog.policy, revision);
    t.regex(readyLog.toolstack, /^sim/);
    const plugin = (action: string, plug: string) =>
      execa(join(opt, 'plugin', 'fence_broker'), ['-o', action, '-n', plug, '-a', `127.0.0.1:${port}`, '-k', keyFile, '--host-key-fingerprint', readyLog.host_key], { reject: false, env, extendEnv: false, cwd, timeout: 120_000 });
    const status = await plugin('status', 'web-2');
    t.is(status.exitCode, 0, `${status.stdout}${status.stderr}`);
    t.regex(String(status.stdout), /Status: ON/);
    const off = await plugin('off', 'web-2');
    t.is(off.exitCode, 0, `${off.stdout}${off.stderr}`);
    const sim = JSON.parse(readFileSync(join(prefix, 'var', 'lib', 'fence-broker', 'sim.json'), 'utf8')) as { domains: Record<string, string> };
    t.is(sim.domains['web-2'], 'shut off');
    const audit = readFileSync(join(prefix, 'var', 'log', 'fence-broker', 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    t.like(audit.filter((l) => l.event === 'request').at(-1), { cluster: 'web', node: 'web-1', action: 'off', target: 'web-2', decision: 'allow', policy: { revision } });

    // logrotate, as installed: the SIGHUP goes to the pid in broker.pid_file and to no other
    // process that merely looks like the broker (the old `pkill -f 'dist/broker/main.js'` would have hit this one).
    if (existsSync(LOGROTATE)) {
      const decoy = execa(process.execPath, ['-e', 'process.on("SIGHUP", () => process.exit(3)); setInterval(() => {}, 1e6)', 'dist/broker/main.js', '--config', configFile], { reject: false });
      try {
        const auditLog = join(prefix, 'var', 'log', 'fence-broker', 'audit.jsonl');
        const rotate = await execa(LOGROTATE, ['-f', '-s', join(tempDir('fb-logrotate-'), 'state'), join(prefix, 'etc', 'logrotate.d', 'fence-broker')], { reject: false, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, extendEnv: false });
        t.is(rotate.exitCode, 0, `${rotate.stderr}${rotate.stdout}`);
        t.true(existsSync(`${auditLog}.1`), 'rotated');
        await until('the broker reopened its audit log (a reload event in the new file)', () => existsSync(auditLog) && readFileSync(auditLog, 'utf8').includes('"event":"reload"'), 60_000);
        t.is(decoy.exitCode, null, 'the look-alike process got no SIGHUP');
        t.is((await plugin('status', 'web-1')).exitCode, 0);
        t.regex(readFileSync(auditLog, 'utf8'), /"action":"status","target":"web-1"/);
      } finally {
        decoy.kill('SIGKILL');
        await decoy;
      }
    }
  } finally {
    await cleanup(async () => {
      daemon.kill('SIGTERM');
      const r = await within('the installed fence-broker stopping on SIGTERM', daemon, 60_000, () => log);
      t.is(r.exitCode, 0, log);
      t.false(r.isForcefullyTerminated);
      t.regex(log, /"msg":"stopped"/);
    });
  }
});

test.serial('the installed man pages are where man looks under the prefix, as built; the installed fencectl answers --version from RELEASE, fingerprint with the pin install.sh made, and keygen, pacemaker, heartbeat and check as the docs show them, all with the one key path and pin', async (t) => {
  const { prefix, env, cwd, installOutput } = await within('package and install', installed(), 240_000);
  const manRoot = join(prefix, 'usr', 'local', 'share', 'man');
  for (const page of ['man8/fencectl.8', 'man8/fence-broker.8', 'man8/fence_broker.8', 'man5/clusters.yaml.5']) {
    const file = join(manRoot, page);
    t.is(lstatSync(file).mode & 0o777, 0o644, page);
    t.is(readFileSync(file, 'utf8'), readFileSync(projectPath('dist', 'man', page), 'utf8'), `${page} is the built page`);
    // man itself finds it by name under the prefix's man tree (man-db; CI has it, the man test requires it there).
    const [section, base] = page.split('/') as [string, string];
    const where = await execa('man', ['--manpath', manRoot, '-w', section.replace('man', ''), base.replace(/\.\d$/, '')], { reject: false });
    if (where.exitCode === 0 || process.env.CI === 'true') t.is(String(where.stdout), file, `man -w: ${String(where.stderr)}`);
  }
  t.true(installOutput.includes(`man pages in ${manRoot}`), installOutput);
  const fencectl = join(prefix, 'usr', 'local', 'bin', 'fencectl');
  const v = await execa(fencectl, ['--version'], { reject: false, env, extendEnv: false, cwd });
  t.is(v.exitCode, 0, String(v.stderr));
  t.regex(String(v.stdout), new RegExp(`^fencectl \\(fence-broker\\) ${version.replace(/\./g, '\\.')}\ncommit [0-9a-f]{40}`));
  const pin = /host key \S+ created \(ed25519, 0600\): (SHA256:\S+)/.exec(installOutput)?.[1];
  const fp = await execa(fencectl, ['fingerprint'], { reject: false, env, extendEnv: false, cwd });
  t.is(fp.exitCode, 0, String(fp.stderr));
  t.is(String(fp.stdout), String(pin), 'fingerprint (its --config defaulting to the prefix) prints the pin made at install');

  // The admin's commands as the docs show them, on the installed example: every one names the same key path and pin.
  const run = (args: string[]) => execa(fencectl, args, { reject: false, env, extendEnv: false, cwd });
  const keygen = await run(['keygen', '--cluster', 'web', '--node', 'web-1', '--out', join(tempDir('fb-keys-'), 'keys')]);
  t.is(keygen.exitCode, 0, String(keygen.stderr));
  const keyPath = /^ {2}identity_file=(\S+)$/m.exec(String(keygen.stdout))?.[1];
  t.is(keyPath, '/etc/fence-broker/id_ed25519');
  t.true(String(keygen.stdout).includes(`install `) && String(keygen.stdout).includes(` as ${keyPath} (0600)`), String(keygen.stdout));
  t.true(String(keygen.stdout).includes(`host_key_fingerprint=${pin}`));
  const pcs = await run(['pacemaker', '--cluster', 'web', '--format', 'pcs']);
  t.is(pcs.exitCode, 0, String(pcs.stderr));
  t.is((String(pcs.stdout).match(new RegExp(`^ {2}identity_file=${keyPath} \\\\$`, 'gm')) ?? []).length, 2, String(pcs.stdout));
  t.is((String(pcs.stdout).match(new RegExp(`host_key_fingerprint=${String(pin).replace(/[+/]/g, '\\$&')} `, 'g')) ?? []).length, 2);
  const hb = await run(['heartbeat', '--cluster', 'web']);
  t.is(hb.exitCode, 0, String(hb.stderr));
  t.is(String(hb.stdout), `stonith_host * external/fence-broker 192.168.122.1 2222 fence ${keyPath} ${pin} 45 5`);
  const check = await run(['check']);
  t.is(check.exitCode, 0, String(check.stderr));
  t.regex(String(check.stderr), /warning: node web\/web-1 has the example config's placeholder key/, 'the installed example is not called plainly ok');
});

test('install.sh keeps an admin\'s config, replaces the program tree, refuses Node < 20 and a relative prefix', async (t) => {
  const { release, env, cwd } = await within('package and install', installed(), 240_000);
  const prefix = tempDir('fb-prefix-');
  const run = (args: string[], e = env) => execa(join(release, 'install.sh'), args, { reject: false, env: e, extendEnv: false, cwd });
  t.is((await run(['--prefix', prefix])).exitCode, 0);
  const configFile = join(prefix, 'etc', 'fence-broker', 'clusters.yaml');
  const edited = readFileSync(configFile, 'utf8').replace('listen: 192.168.122.1:2222', 'listen: 10.0.0.1:2222  # the admin\'s');
  writeFileSync(configFile, edited);
  const stale = join(prefix, 'opt', 'fence-broker', 'dist', 'broker', 'chunk-STALE.js');
  writeFileSync(stale, '');
  const again = await run([`--prefix=${prefix}/`]);
  t.is(again.exitCode, 0, String(again.stderr));
  t.regex(String(again.stdout), /kept the existing .*clusters\.yaml/);
  t.is(readFileSync(configFile, 'utf8'), edited, 'never overwritten');
  t.false(existsSync(stale), 'files of an older install do not linger');
  t.deepEqual(readdirSync(join(prefix, 'opt')), ['fence-broker'], 'no staging folder left behind');

  const oldNode = join(tempDir('fb-old-node-'), 'node');
  writeFileSync(oldNode, '#!/bin/sh\necho 18.19.1\n', { mode: 0o755 });
  const old = await run(['--prefix', tempDir('fb-prefix-')], hostEnv(hostPath(oldNode), cwd));
  t.is(old.exitCode, 1);
  t.regex(String(old.stderr), /is Node\.js 18\.19\.1; fence-broker needs Node\.js >= 20/);
  const none = await run(['--prefix', tempDir('fb-prefix-')], hostEnv(hostPath(null), cwd));
  t.is(none.exitCode, 1);
  t.regex(String(none.stderr), /node not found on PATH/);
  const relative = await run(['--prefix', 'opt/x']);
  t.is(relative.exitCode, 1);
  t.regex(String(relative.stderr), /--prefix must be an absolute path/);
  const notOurs = tempDir('fb-prefix-');
  mkdirSync(join(notOurs, 'opt', 'fence-broker'), { recursive: true }); // say, a checkout put there by hand
  const refused = await run(['--prefix', notOurs]);
  t.is(refused.exitCode, 1);
  t.regex(String(refused.stderr), /was not installed by install\.sh/);
});

const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
if (!analyze && process.env.CI === 'true') throw new Error('CI needs systemd-analyze (Debian package systemd; scripts/system-setup.sh installs it)');
if (!analyze) console.error('install test: systemd-analyze verify skipped here: systemd-analyze not installed');

(analyze ? test : test.skip)('systemd-analyze verify accepts the installed unit without a warning', async (t) => {
  const { prefix } = await within('package and install', installed(), 240_000);
  const unit = join(prefix, 'lib', 'systemd', 'system', 'fence-broker.service');
  // No systemd needs to run; it loads the unit, checks every key and that ExecStart's program is executable.
  const r = await execa(analyze as string, ['verify', '--man=no', unit], { reject: false, env: { PATH: dirname(analyze as string) }, extendEnv: false });
  t.is(r.exitCode, 0, `${r.stderr}${r.stdout}`);
  t.is(String(r.stderr).trim(), '', 'any output is a warning about the unit');
  // And it would say so: the same unit with a misspelt key and a missing node does not pass silently.
  const bad = join(tempDir('fb-unit-'), 'fence-broker.service');
  writeFileSync(bad, readFileSync(unit, 'utf8').replace('\nUMask=', '\nUMsk=').replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node'));
  const r2 = await execa(analyze as string, ['verify', '--man=no', bad], { reject: false, env: { PATH: dirname(analyze as string) }, extendEnv: false });
  t.not(r2.exitCode, 0);
  t.regex(String(r2.stderr), /Unknown key 'UMsk'/);
  t.regex(String(r2.stderr), /\/nonexistent\/node is not executable/);
});
