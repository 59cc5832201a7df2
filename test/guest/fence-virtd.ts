// Debian's fence_virtd with its serial listener (fence-virtd's serial.so) and
// libvirt backend, run in the foreground with its own config and pid file: the
// reference peer that shows the real guest's side of the serial protocol works
// before, and beside, fence-broker's own serial door.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { URI } from '../libvirt-host.js';

export const FENCE_VIRTD = '/usr/sbin/fence_virtd';
export const FENCE_VIRT_MODULES = '/usr/lib/x86_64-linux-gnu/fence-virt';

/** Why fence_virtd's serial listener cannot run here, or undefined. */
export function fenceVirtdSerialMissing(): string | undefined {
  if (!existsSync(FENCE_VIRTD)) return `${FENCE_VIRTD} is not installed (scripts/system-setup.sh installs fence-virtd)`;
  for (const m of ['serial.so', 'virt.so']) if (!existsSync(join(FENCE_VIRT_MODULES, m))) return `fence_virtd's ${m} is not in ${FENCE_VIRT_MODULES}`;
  return undefined;
}

export interface FenceVirtdSerial {
  pid: number;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts fence_virtd (-F, its own -p pid file: the default one may be held by
 * a host fence_virtd) serving the sockets directly inside `channelsDir`. It
 * scans the running domains when it starts: start it after the guests.
 * Readiness is the caller's to see (a request answered from a guest).
 */
export function startFenceVirtdSerial(workDir: string, channelsDir: string): FenceVirtdSerial {
  const conf = join(workDir, 'fence_virt.conf');
  // fence_virtd checks a key file exists (0600) whatever its listener, although
  // the serial listener uses none: give it one of its own.
  const keyFile = join(workDir, 'fence_xvm.key');
  writeFileSync(keyFile, randomBytes(512), { mode: 0o600 });
  writeFileSync(
    conf,
    `fence_virtd {\n  listener = "serial";\n  backend = "libvirt";\n  module_path = "${FENCE_VIRT_MODULES}";\n}\n` +
      `listeners {\n  serial {\n    key_file = "${keyFile}";\n    uri = "${URI}";\n    path = "${channelsDir}";\n    mode = "serial";\n  }\n}\n` +
      `backends {\n  libvirt {\n    uri = "${URI}";\n  }\n}\n`,
    { mode: 0o600 },
  );
  const child = spawn(FENCE_VIRTD, ['-F', '-p', join(workDir, 'fence_virtd.pid'), '-f', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (b: Buffer) => (log = (log + b.toString()).slice(-20_000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      log += `\ncannot run ${FENCE_VIRTD}: ${err.message}`;
      resolve();
    });
    child.once('exit', (code, signal) => {
      log += `\n[fence_virtd exited ${code ?? signal}]`;
      resolve();
    });
  });
  return {
    pid: child.pid ?? -1,
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    },
  };
}
