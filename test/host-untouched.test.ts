// Nothing touches the host unasked (issue 22): root's `npm run package` and
// `npm start`, from a fresh checkout, change neither /etc/libvirt/qemu.conf
// nor the package list; only `npm test` and the benches run
// scripts/system-setup.sh. Each command runs in its own mount and network
// namespace (unshare) where /etc/libvirt/qemu.conf is a copy WITHOUT the
// settings system-setup.sh adds, so a run of it would show as a change (the
// dry run, below, proves it would), and the demo's fixed port 2222 is private.
import test from 'ava';
import { execa, type ResultPromise } from 'execa';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, realpathSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { projectPath } from '../common/paths.js';
import { cleanup, tempDir, within } from './helpers.js';

const CI = process.env.CI === 'true';
const QEMU_CONF = '/etc/libvirt/qemu.conf';
const root = process.getuid?.() === 0;
const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => existsSync(p));
const missing = [!root && 'root', !unshare && 'unshare (util-linux)', !existsSync(QEMU_CONF) && QEMU_CONF].filter(Boolean);
if (missing.length && CI) throw new Error(`CI needs ${missing.join(', ')} for the host-untouched test (scripts/system-setup.sh installs libvirt)`);
if (missing.length) console.error(`host-untouched: skipped here: needs ${missing.join(', ')}`);

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const packages = async (): Promise<string> => (await execa('dpkg-query', ['-W'])).stdout;

/**
 * The tree a fresh clone has: every file git tracks or would (untracked, not
 * ignored), as in the working tree; no dist, .demo or .tools. node_modules is a
 * copy of the installed one, older package-lock.json than it, as after the
 * clone's own `npm ci` (no network here; the shared one is never written).
 */
async function freshCheckout(): Promise<string> {
  const dir = join(tempDir('fb-clone-'), 'fence-broker');
  const files = (await execa('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: projectPath() })).stdout.split('\0').filter(Boolean);
  for (const f of files) {
    const from = projectPath(f);
    if (!existsSync(from)) continue; // deleted in the working tree, not yet committed
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(from, join(dir, f));
  }
  await execa('chmod', ['+x', join(dir, 'scripts', 'setup.sh'), join(dir, 'scripts', 'system-setup.sh')]);
  cpSync(realpathSync(projectPath('node_modules')), join(dir, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  const old = new Date('2000-01-01T00:00:00Z');
  utimesSync(join(dir, 'package-lock.json'), old, old);
  return dir;
}

/** `argv` in fresh mount and network namespaces, with `conf` mounted over /etc/libvirt/qemu.conf and loopback up. */
function isolated(conf: string, cwd: string, env: Record<string, string>, argv: string[], opts: { detached?: boolean } = {}): ResultPromise {
  const script = 'mount --bind "$0" /etc/libvirt/qemu.conf && ip link set lo up && exec "$@"';
  return execa(unshare as string, ['--mount', '--net', '--propagation', 'private', 'sh', '-c', script, conf, ...argv], {
    cwd,
    env,
    reject: false,
    all: true,
    detached: opts.detached ?? false,
    buffer: !opts.detached,
  }) as unknown as ResultPromise;
}

(missing.length ? test.skip : test)('root\'s npm run package and npm start change neither qemu.conf nor the package list', async (t) => {
  const opa = await execa('bash', [projectPath('scripts', 'opa.sh'), '--no-install'], { reject: false });
  if (opa.exitCode !== 0) throw new Error(`no OPA for the fresh checkout's build: ${opa.stderr}`);
  const clone = await within('a fresh checkout', freshCheckout(), 120_000);
  // What system-setup.sh appends, taken out: a machine that never ran the tests.
  const conf = join(tempDir('fb-qemu-conf-'), 'qemu.conf');
  const ours = /^(# fence-broker test host settings|user = "root"|group = "root"|security_driver = "none"|cgroup_controllers = \[ \])$/;
  writeFileSync(conf, readFileSync(QEMU_CONF, 'utf8').split('\n').filter((l) => !ours.test(l)).join('\n'));
  const env = { PATH: String(process.env.PATH), HOME: String(process.env.HOME ?? '/root'), OPA: opa.stdout.trim(), LANG: 'C.UTF-8' };

  // The check can see a change: here system-setup.sh would append its lines.
  const dry = await isolated(conf, clone, env, ['bash', 'scripts/system-setup.sh', '--dry-run']);
  t.is(dry.exitCode, 0, String(dry.all));
  t.regex(String(dry.all), /append to \/etc\/libvirt\/qemu\.conf: security_driver = "none"/);

  const realConf = sha256(QEMU_CONF);
  const copyConf = sha256(conf);
  const before = await packages();

  const pack = await within('npm run package', isolated(conf, clone, env, ['npm', 'run', 'package']), 600_000);
  t.is(pack.exitCode, 0, String(pack.all));
  const { version } = JSON.parse(readFileSync(join(clone, 'package.json'), 'utf8')) as { version: string };
  t.true(existsSync(join(clone, 'dist', 'release', `fence-broker-${version}.tar.gz`)), String(pack.all));
  t.notRegex(String(pack.all), /system-setup/, 'npm run package does not run system setup');
  t.is(sha256(conf), copyConf, `npm run package changed ${QEMU_CONF}`);

  // npm start: serving, then stopped (the whole process group: npm, demo.js, the broker).
  const start = isolated(conf, clone, env, ['npm', 'start'], { detached: true });
  let log = '';
  start.all?.on('data', (b: Buffer) => void (log += b.toString()));
  const serving = new Promise<void>((resolve, reject) => {
    start.all?.on('data', () => log.includes('fence-broker ready') && resolve());
    void start.then((r) => reject(new Error(`npm start exited ${r.exitCode} before it served: ${log}`)));
  });
  try {
    await within('npm start serving', serving, 600_000, () => log);
  } finally {
    await cleanup(async () => {
      if (start.pid) process.kill(-start.pid, 'SIGTERM');
      await within('npm start stopping', start, 60_000, () => log);
    });
  }
  t.notRegex(log, /system-setup/, 'npm start does not run system setup');
  t.is(sha256(conf), copyConf, `npm start changed ${QEMU_CONF}`);

  t.is(sha256(QEMU_CONF), realConf, `the real ${QEMU_CONF} changed`);
  t.is(await packages(), before, 'the package list changed');
});
