// The admin's path (issue 22): exactly the `sh` blocks of
// docs/admin/first-hour.md, read from the page so the doc and the test cannot
// drift, run in order on the installed release: built by scripts/package.mjs
// (what `npm run package` runs after the build) into a folder of this test's
// own, installed by its install.sh into a fresh staging prefix, with a PATH of
// Node and base tools only (no npm, opa, Go or compiler) and the sim
// toolstack. Each block runs in `sh -eu` after the page's settings block;
// its first comment says whether it is not run here (the build machine's),
// runs in a second terminal (the daemon, in the background until the stop
// block ends it), or must fail with a given exit status. Then: every key path
// and host key pin the commands printed agree.
import test from 'ava';
import { execa, type ResultPromise } from 'execa';
import { copyFileSync, existsSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { projectPath } from '../common/paths.js';
import { cleanup, tempDir, within } from './helpers.js';

const PAGE = projectPath('docs', 'admin', 'first-hour.md');

interface Block {
  /** Line of the opening fence, for messages. */
  line: number;
  text: string;
  kind: 'build-machine' | 'background' | 'run';
  expectExit: number;
}

/** The page's ```sh blocks, in order, each classified by its first comment line. */
function shellBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```sh') continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i] as string);
    const first = body[0] ?? '';
    const exits = /^# exits (\d+)/.exec(first);
    blocks.push({
      line: start + 1,
      text: body.join('\n') + '\n',
      kind: /^# on the build machine/.test(first) ? 'build-machine' : /^# in a second terminal/.test(first) ? 'background' : 'run',
      expectExit: exits ? Number(exits[1]) : 0,
    });
  }
  return blocks;
}

/** What the blocks may call besides node: base tools of any Debian host. */
const TOOLS = ['sh', 'tar', 'gzip', 'cat', 'sed', 'grep', 'find', 'install', 'chmod', 'mv', 'rm', 'ln', 'dirname', 'mkdir'];

function toolDir(): string {
  const bin = tempDir('fb-path-bin-');
  for (const tool of TOOLS) {
    const at = ['/usr/bin', '/bin'].map((d) => join(d, tool)).find((p) => existsSync(p));
    if (!at) throw new Error(`${tool} not found in /usr/bin or /bin`);
    symlinkSync(at, join(bin, tool));
  }
  symlinkSync(process.execPath, join(bin, 'node'));
  return bin;
}

/** A loopback port free right now (the page's PORT setting takes it from the environment). */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

const matches = (text: string, re: RegExp): string[] => [...text.matchAll(re)].map((m) => m[1] as string);

test('the admin\'s first hour, exactly as docs/admin/first-hour.md shows it, on the installed release', async (t) => {
  const blocks = shellBlocks(readFileSync(PAGE, 'utf8'));
  const [settings, ...steps] = blocks.filter((b) => b.kind !== 'build-machine');
  t.truthy(settings?.text.includes('export TRIAL='), 'the first block run is the settings block');
  t.true(blocks.some((b) => b.kind === 'build-machine' && b.text.includes('npm run package')), 'the page builds the release with npm run package');
  t.is(steps.filter((b) => b.kind === 'background').length, 1, 'one block starts the daemon');

  // The release, as npm run package makes it (the build is current: setup ran), in this test's own folder.
  const releases = tempDir('fb-release-');
  const pack = await within('package', execa('node', [projectPath('scripts', 'package.mjs')], { reject: false, env: { RELEASE_DIR: releases } }), 300_000);
  t.is(pack.exitCode, 0, `${pack.stderr}${pack.stdout}`);
  const home = tempDir('fb-admin-home-');
  const tarball = readdirSync(releases).find((f) => f.endsWith('.tar.gz')) as string;
  copyFileSync(join(releases, tarball), join(home, tarball)); // what scp put there
  const env = { HOME: home, PATH: toolDir(), LANG: 'C.UTF-8', PORT: String(await freePort()) };
  const run = (b: Block) => execa('sh', ['-eu', '-c', `${settings?.text ?? ''}${b.text}`], { reject: false, env, extendEnv: false, cwd: home, timeout: 180_000 });

  let daemon: ResultPromise | undefined;
  let daemonLog = '';
  const outputs: { block: Block; stdout: string; stderr: string }[] = [];
  try {
    for (const b of steps) {
      if (b.kind === 'background') {
        daemon = execa('sh', ['-eu', '-c', `${settings?.text ?? ''}exec ${b.text.split('\n').filter((l) => l && !l.startsWith('#')).join('\n')}`], { reject: false, env, extendEnv: false, cwd: home, buffer: false, stdout: 'ignore', stderr: 'pipe' });
        const d = daemon;
        await within(
          `the daemon of line ${b.line} ready`,
          new Promise<void>((resolve, reject) => {
            d.stderr?.on('data', (x: Buffer) => {
              daemonLog += x.toString();
              if (/INFO: fence-broker ready/.test(daemonLog)) resolve();
            });
            void d.then((r) => reject(new Error(`fence-broker exited ${r.exitCode}: ${daemonLog}`)));
          }),
          120_000,
          () => daemonLog,
        );
        continue;
      }
      const r = await within(`the block of line ${b.line}`, run(b), 200_000);
      t.log(`$ (line ${b.line}) ${b.text.trim()}\n${String(r.stdout)}${String(r.stderr)}`);
      t.is(r.exitCode, b.expectExit, `the block of line ${b.line} exits ${b.expectExit}: ${String(r.stderr)}${String(r.stdout)}`);
      outputs.push({ block: b, stdout: String(r.stdout), stderr: String(r.stderr) });
    }
    // The stop block ended the daemon: cleanly, by SIGTERM.
    const stopped = await within('the daemon stopping', daemon as ResultPromise, 60_000, () => daemonLog);
    t.is(stopped.exitCode, 0, daemonLog);
    t.regex(daemonLog, /INFO: stopped/);
    daemon = undefined;
  } finally {
    await cleanup(async () => {
      if (daemon) {
        daemon.kill('SIGTERM');
        await daemon;
      }
    });
  }

  t.log(`the daemon's log:\n${daemonLog}`);
  const all = outputs.map((o) => o.stdout + o.stderr).join('\n');
  const by = (re: RegExp) => outputs.filter((o) => re.test(o.block.text)).map((o) => o.stdout + o.stderr).join('\n');
  // The daemon's log names each request (text, ISO times), the fence among them.
  t.regex(daemonLog, /^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] INFO: request web\/web-1 off web-2 via ssh: allow, ok/m);
  t.regex(daemonLog, /INFO: request web\/web-1 off web-1 via ssh: deny, refused/);
  t.regex(by(/^fencectl status$/m), /fences in flight: 0\n/);
  t.regex(by(/^fencectl status$/m), /web-2 marked by web\/web-1/, 'status shows the race mark of the fence');
  t.regex(by(/^fencectl status$/m), /storm counts: web 1\n {4}web: web-2/, 'status shows the storm count of the fence');
  t.regex(by(/^fencectl reload$/m), /^reloaded fence-broker pid \d+: policy rego-/m);
  t.regex(by(/-k "\$TRIAL\/keys\/web-2"/), /is not accepted/);

  // One key path for the node, whoever prints it.
  const keyPaths = [
    ...matches(by(/fencectl keygen/), /identity_file=(\S+)/g),
    ...matches(by(/fencectl keygen/), /install \S+ as (\S+) \(0600\)/g),
    ...matches(by(/fencectl pacemaker/), /identity_file=(\S+?)["'\s]/g),
    ...matches(by(/fencectl heartbeat/), /^stonith_host \S+ \S+ \S+ \S+ \S+ (\S+) /gm),
  ];
  t.true(keyPaths.length >= 6, `key paths found: ${keyPaths.join(', ')}`);
  t.deepEqual([...new Set(keyPaths)], ['/etc/fence-broker/id_ed25519'], `every command prints the same key path: ${keyPaths.join(', ')}`);
  // One pin for the host key: install, keygen, fingerprint, the daemon, status, pacemaker, heartbeat.
  const pins = [
    ...matches(all, /created \(ed25519, 0600\): (SHA256:[A-Za-z0-9+/]{43})/g),
    ...matches(by(/fencectl keygen/), /host_key_fingerprint=(SHA256:[A-Za-z0-9+/]{43})/g),
    ...matches(by(/^fencectl fingerprint$/m), /^(SHA256:[A-Za-z0-9+/]{43})$/gm),
    ...matches(daemonLog, /"host_key":"(SHA256:[A-Za-z0-9+/]{43})"/g),
    ...matches(by(/^fencectl status$/m), /^host key +(SHA256:[A-Za-z0-9+/]{43})$/gm),
    ...matches(by(/fencectl pacemaker/), /host_key_fingerprint=(SHA256:[A-Za-z0-9+/]{43})/g),
    ...matches(by(/fencectl heartbeat/), /^stonith_host \S+ \S+ \S+ \S+ \S+ \S+ (SHA256:[A-Za-z0-9+/]{43}) /gm),
  ];
  t.true(pins.length >= 8, `pins found: ${pins.join(', ')}`);
  t.is(new Set(pins).size, 1, `every command prints the same pin: ${pins.join(', ')}`);
});
