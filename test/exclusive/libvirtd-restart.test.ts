// libvirtd restarted under the serial door (issue 20): the channels are found
// again. libvirtd is killed with SIGKILL and started again, as system-setup.sh
// starts it, so this file runs alone, after the main suite (npm test's second
// ava run, test/exclusive/ava.config.mjs): every other test talks to libvirtd.
//
// Shown: a guest's channel that was open before the crash still serves; a guest
// started after it is found, with the broker's full re-list set to 300 s, so by
// the restarted event watch; and it fences its peer, audited with its channel.
import test from 'ava';
import { execa } from 'execa';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type Daemon } from '../broker-daemon.js';
import { Guest } from '../guest/guest.js';
import { guestImage } from '../guest/image.js';
import { cleanup, tempDir, within } from '../helpers.js';
import { URI, createDomain, domstate, libvirtMissing, removeDomain, sweepStale, virsh } from '../libvirt-host.js';

const FV = 'fence_virt -D /dev/ttyS1 -t 10';

const libvirtdPid = async (): Promise<number | undefined> => {
  const r = await execa('pgrep', ['-x', 'libvirtd'], { reject: false });
  const pid = Number(String(r.stdout).split('\n')[0]);
  return pid > 0 ? pid : undefined;
};

/** Asks `g` until fence_virt's status of `domain` is answered (the broker has its channel), bounded. */
async function answered(g: Guest, domain: string, timeoutMs: number): Promise<{ out: string; rc: number }> {
  const deadline = performance.now() + timeoutMs;
  let last = { out: '', rc: -1 };
  while (performance.now() < deadline) {
    last = await g.run(`${FV} -o status -n ${domain}`, 60_000);
    if (last.rc === 0) return last;
  }
  return last;
}

test('libvirtd killed (SIGKILL) and started again: an open channel still serves, a guest started after it is found by the restarted event watch and fences its peer', async (t) => {
  const missing = await libvirtMissing();
  if (missing) return t.fail(missing);
  await sweepStale();
  const image = await guestImage();
  const channels = join(tempDir('fb-chan-'), 'channels');
  mkdirSync(channels, { mode: 0o700 });
  const domains: string[] = [];
  const guests: Guest[] = [];
  let d: Daemon | undefined;
  try {
    const peer = await createDomain('lvpeer', true, (n) => domains.push(n));
    const before = await Guest.boot({ tag: 'lvbefore', image, channelsDir: channels, track: (n) => domains.push(n) });
    guests.push(before);
    // Defined now (its name is in the config), started only after the crash.
    const after = await Guest.define({ tag: 'lvafter', image, channelsDir: channels, track: (n) => domains.push(n) });
    guests.push(after);
    d = await startDaemon({
      clusters: { blue: { domains: [peer, before.name, after.name], nodes: { 'blue-1': before.name, 'blue-2': after.name } } },
      toolstack: `{ type: virsh, uri: "${URI}" }`,
      // No full re-list within the test: what finds the new guest is libvirt's events, watched again after the crash.
      extraBroker: ['  fence_virt:', `    channels: { dir: ${channels}, rescan: 300 }`],
    });
    const first = await answered(before, peer, 120_000);
    t.is(first.rc, 0, `before the crash: ${first.out}\n${d.logTail(2000)}`);

    const old = await libvirtdPid();
    t.truthy(old, 'libvirtd runs');
    process.kill(old as number, 'SIGKILL');
    await execa('bash', ['-c', 'for i in $(seq 100); do pgrep -x libvirtd >/dev/null || exit 0; sleep 0.1; done; exit 1']);
    await execa('libvirtd', ['-d']);
    const up = performance.now() + 60_000;
    while ((await virsh('version')).exitCode !== 0) {
      if (performance.now() > up) return t.fail('libvirtd did not answer within 60 s of its restart');
      await new Promise((r) => setTimeout(r, 200));
    }
    const now = await libvirtdPid();
    t.not(now, old, 'a new libvirtd');

    // The channel opened before the crash is QEMU's, not libvirtd's: it still serves.
    const still = await before.run(`${FV} -o status -n ${peer}`, 60_000);
    t.is(still.rc, 0, still.out);

    await after.start();
    const found = await answered(after, peer, 120_000);
    t.is(found.rc, 0, `the guest started after the crash: ${found.out}\n${d.logTail(3000)}`);
    const off = await after.run(`${FV} -o off -n ${peer}`, 90_000);
    t.is(off.rc, 0, off.out);
    t.is(await domstate(peer), 'shut off');
    const line = d.audit().find((l) => l.action === 'off' && l.target === peer);
    t.like(line, { door: 'fence_virt/serial', channel: after.channel, channel_domain: after.name, node: 'blue-2', decision: 'allow' });
  } finally {
    // Each step bounded and named: a hang is a failure that says where.
    await cleanup(
      () => d && within('stopping the broker', d.stop(), 60_000),
      ...guests.map((g) => () => within(`destroying ${g.name}`, g.destroy(), 60_000)),
      ...domains.map((n) => () => within(`removing ${n}`, removeDomain(n), 60_000)),
    );
  }
});
