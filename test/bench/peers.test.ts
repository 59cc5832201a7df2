// The benchmark's fence_virtd starts on a host where a fence_virtd already
// runs: by default fence_virtd takes /var/run/fence_virtd.pid and exits 1 when
// another one holds it, so the bench's gets a pid file (and a free port) of
// its own. A real fence_virtd plays the host's (or the host's own is used).
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchMissing, FENCE_VIRTD, freePort, startFenceVirtd } from '../../bench/peers.js';
import { URI } from '../libvirt-host.js';
import { cleanup, isAlive, tempDir, until } from '../helpers.js';

const missing = await benchMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs fence_virtd and libvirt: ${missing}`);
if (missing) console.error(`bench peers test skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest) as TestFn;

const HOST_PID_FILE = '/var/run/fence_virtd.pid';
const MODULES = '/usr/lib/x86_64-linux-gnu/fence-virt';

/** The pid in fence_virtd's default pid file while that process lives. */
function hostPid(): number | undefined {
  if (!existsSync(HOST_PID_FILE)) return undefined;
  const pid = Number(readFileSync(HOST_PID_FILE, 'utf8').trim());
  return pid > 0 && isAlive(pid) ? pid : undefined;
}

test('the bench\'s fence_virtd starts and answers while a host fence_virtd holds /var/run/fence_virtd.pid', async (t) => {
  const dir = tempDir('fb-host-virtd-');
  let host: ReturnType<typeof execa> | undefined;
  if (hostPid() === undefined) {
    // A fence_virtd as a host runs it: default pid file, its own tcp port and key.
    const key = join(dir, 'key');
    writeFileSync(key, 'k'.repeat(512), { mode: 0o600 });
    const conf = join(dir, 'fence_virt.conf');
    writeFileSync(
      conf,
      `fence_virtd {\n  listener = "tcp";\n  backend = "libvirt";\n  module_path = "${MODULES}";\n}\n` +
        `listeners {\n  tcp {\n    key_file = "${key}";\n    address = "127.0.0.1";\n    family = "ipv4";\n    port = "${await freePort()}";\n  }\n}\n` +
        `backends {\n  libvirt {\n    uri = "${URI}";\n  }\n}\n`,
      { mode: 0o600 },
    );
    host = execa(FENCE_VIRTD, ['-F', '-f', conf], { reject: false, all: true });
    await until('the host fence_virtd holds its pid file', () => hostPid() === host?.pid || host?.exitCode !== null);
    t.is(hostPid(), host.pid, 'the host fence_virtd did not start');
  } else t.log(`a fence_virtd of this host runs: pid ${hostPid()}`);
  const held = hostPid();
  let ours: Awaited<ReturnType<typeof startFenceVirtd>> | undefined;
  try {
    ours = await startFenceVirtd(join(dir, 'bench'), 30_000);
    t.not(ours.pid, held);
    const list = await execa('fence_virt', ['-T', '127.0.0.1', '-p', String(ours.port), '-k', ours.keyFile, '-t', '5', '-o', 'list'], { reject: false, timeout: 30_000 });
    t.is(list.exitCode, 0, list.stderr);
    t.is(Number(readFileSync(join(dir, 'bench', 'fence_virtd.pid'), 'utf8').trim()), ours.pid, 'its own pid file');
    t.is(hostPid(), held, 'the host one still holds the default pid file');
  } finally {
    await cleanup(
      () => ours?.stop(),
      async () => {
        if (!host) return;
        host.kill('SIGTERM');
        await host;
        // fence_virtd leaves its pid file behind: ours, so not the host's to keep.
        if (existsSync(HOST_PID_FILE) && Number(readFileSync(HOST_PID_FILE, 'utf8').trim()) === host.pid) rmSync(HOST_PID_FILE);
      },
    );
  }
});
