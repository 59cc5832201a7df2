// The SSH front door's limits, through the real daemon: idle connections are
// closed, connections beyond the limit are refused, auth attempts are capped.
import test from 'ava';
import { execa } from 'execa';
import { connect, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { startDaemon } from './broker-daemon.js';

const closedWithin = (sock: Socket, ms: number) =>
  new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    sock.on('error', () => undefined);
    sock.resume(); // a paused socket never sees the end, so never 'close'
  });

test('idle connections are closed; connections beyond max_connections are refused; auth attempts are capped', async (t) => {
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1'], nodes: { 'blue-1': 'blue-1' } } },
    extraBroker: ['  limits: { max_connections: 2, max_auth_attempts: 3, idle_timeout: 1 }'],
  });
  try {
    // Two silent TCP clients take both slots, then the idle timeout closes them.
    const t0 = performance.now();
    const aClosed = closedWithin(connect(d.port, '127.0.0.1'), 5_000);
    const bClosed = closedWithin(connect(d.port, '127.0.0.1'), 5_000);
    await new Promise((r) => setTimeout(r, 300));
    t.true(await closedWithin(connect(d.port, '127.0.0.1'), 800), 'a third connection is closed at once');
    t.true(await aClosed, 'idle connection closed');
    t.true(await bClosed, 'idle connection closed');
    t.log(`silent connections closed after ${Math.round(performance.now() - t0)} ms (idle_timeout 1 s)`);
    // With the slots free again, a real client works.
    const ok = await d.ssh('blue-1', 'list');
    t.is(ok.exitCode, 0, ok.stderr);

    // Five unknown keys offered in one connection: the broker stops listening after three.
    const keys = Array.from({ length: 5 }, (_, i) => {
      const f = join(d.dir, `stranger-${i}`);
      writeFileSync(f, ssh2.utils.generateKeyPairSync('ed25519').private, { mode: 0o600 });
      return f;
    });
    const r = await execa('ssh', ['-v', '-p', String(d.port), ...keys.flatMap((k) => ['-i', k]), '-o', `UserKnownHostsFile=${d.knownHosts}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-F', '/dev/null', 'x@127.0.0.1', 'list'], { reject: false });
    t.is(r.exitCode, 255);
    const offered = (String(r.stderr).match(/Offering public key/g) ?? []).length;
    t.true(offered <= 4, `the client got to offer ${offered} keys`);
  } finally {
    await d.stop();
  }
});
