// No fence without a record (docs/design.md §3.5), through the real daemon: an
// intent line on disk before any power action, a broker that will not start
// or act when its audit log cannot take a line (a full tmpfs, mounted here:
// root), logrotate's SIGHUP, refusals audited before a request exists.
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from '../broker-daemon.js';
import { tempDir } from '../helpers.js';
import { connectAs, execOn, request } from '../ssh-client.js';
import { generateEd25519 } from '../../broker/identity/keygen.js';

const test = anyTest as TestFn;
const root = process.getuid?.() === 0;
if (!root && process.env.CI === 'true') throw new Error('CI runs as root: the full-disk tests mount a tmpfs');
const rootTest = (root ? anyTest : anyTest.skip) as TestFn;
if (!root) console.error('audit full-disk tests skipped here: mounting a tmpfs needs root');

const TENANT = { blue: { domains: ['blue-1', 'blue-2', 'blue-3'], nodes: { 'blue-1': 'blue-1' } } };

/** A 64 KiB tmpfs; `fill()` leaves it with no free byte, the audit log's last page included (blank lines). */
async function smallDisk(): Promise<{ dir: string; fill: () => Promise<void>; unmount: () => Promise<void> }> {
  const dir = tempDir('fb-full-');
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs', dir]);
  return {
    dir,
    fill: async () => {
      await execa('dd', ['if=/dev/zero', `of=${join(dir, 'fill')}`, 'bs=4k'], { reject: false });
      await execa('bash', ['-c', `[ -e "$1" ] || exit 0; while printf '\\n' >> "$1"; do :; done 2>/dev/null`, '_', join(dir, 'audit.jsonl')], { reject: false });
    },
    unmount: async () => {
      await execa('umount', [dir], { reject: false });
    },
  };
}

test('an intent line, on disk, precedes every power action, with the same request id; a read writes one line', async (t) => {
  const d = await startDaemon({ clusters: TENANT });
  try {
    t.is((await request(d, 'blue-1', 'off blue-2')).exitCode, 0);
    t.is((await request(d, 'blue-1', 'status blue-2')).exitCode, 0);
    const lines = d.auditAll().filter((l) => l.event === 'intent' || l.event === 'request');
    t.deepEqual(
      lines.map((l) => `${String(l.event)} ${String(l.action)}`),
      ['intent off', 'request off', 'request status'],
    );
    t.is(lines[0]?.request_id, lines[1]?.request_id);
    t.like(lines[0], { cluster: 'blue', node: 'blue-1', target: 'blue-2' });
    t.like(d.auditAll()[0], { event: 'start' });
  } finally {
    await d.stop();
  }
});

rootTest('an audit log that cannot take a line: the broker refuses to start, at once', async (t) => {
  const disk = await smallDisk();
  try {
    await disk.fill();
    const err = await t.throwsAsync(startDaemon({ clusters: TENANT, auditLog: join(disk.dir, 'audit.jsonl') }));
    t.regex(String(err?.message), /daemon exited 2: .*refusing to start: audit log .* cannot be appended to: ENOSPC/s);
  } finally {
    await disk.unmount();
  }
});

rootTest('the disk fills while running: a fence is refused and nothing is done; the reply says why; SIGTERM still stops it', async (t) => {
  const disk = await smallDisk();
  const d = await startDaemon({ clusters: TENANT, auditLog: join(disk.dir, 'audit.jsonl') });
  try {
    await disk.fill();
    const off = await request(d, 'blue-1', 'off blue-2');
    t.is(off.exitCode, 1);
    t.like(off.reply, { ok: false, code: 'failed', action: 'off', target: 'blue-2' });
    t.regex(String(off.reply.message), /refused: the audit log cannot be written .*ENOSPC.*; nothing was done/);
    t.is(d.sim()['blue-2'], 'running', 'no fence without a record');
    // A read is answered, and says its record is missing.
    const status = await request(d, 'blue-1', 'status blue-2');
    t.like(status.reply, { ok: true, state: 'on' });
    t.regex(String(status.reply.message), /WARNING: the audit log could not be written/);
  } finally {
    await d.stop(); // asserts a clean, prompt exit on SIGTERM
    await disk.unmount();
  }
});

test('SIGHUP reopens the audit log (logrotate moved it away)', async (t) => {
  const d = await startDaemon({ clusters: TENANT });
  try {
    t.is((await request(d, 'blue-1', 'status blue-1')).exitCode, 0);
    const log = join(d.dir, 'audit.jsonl');
    renameSync(log, `${log}.1`);
    await d.reload((y) => y);
    t.is((await request(d, 'blue-1', 'status blue-3')).exitCode, 0);
    const rotated = readFileSync(`${log}.1`, 'utf8');
    const fresh = readFileSync(log, 'utf8');
    t.regex(rotated, /"target":"blue-1"/);
    t.notRegex(rotated, /"target":"blue-3"/);
    t.regex(fresh, /"target":"blue-3"/);
  } finally {
    await d.stop();
  }
});

test('refusals before a request exists are audited, rate-limited: unknown keys, refused channels, oversized commands', async (t) => {
  const d = await startDaemon({ clusters: TENANT });
  try {
    const dir = tempDir();
    mkdirSync(join(dir, 'k'));
    const strangers = Array.from({ length: 4 }, (_, i) => {
      const f = join(dir, 'k', `s${i}`);
      writeFileSync(f, generateEd25519(`stranger-${i}`).private, { mode: 0o600 });
      return f;
    });
    const ssh = (args: string[]) =>
      execa('ssh', ['-p', String(d.port), '-o', `UserKnownHostsFile=${d.knownHosts}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-F', '/dev/null', ...args], {
        reject: false,
        timeout: 60_000,
        stdin: 'ignore',
      });
    for (const k of strangers) t.is((await ssh(['-i', k, 'x@127.0.0.1', 'list'])).exitCode, 255);
    // A subsystem (sftp) and a pty, from a known key.
    t.not((await ssh(['-i', d.key('blue-1'), '-s', 'fence@127.0.0.1', 'sftp'])).exitCode, 0);
    await ssh(['-i', d.key('blue-1'), '-tt', 'fence@127.0.0.1', 'list']);
    // An oversized command never becomes a request.
    const c = await connectAs(d, 'blue-1');
    await t.throwsAsync(execOn(c, `status ${'x'.repeat(2000)}`));
    c.end();

    const refusals = d.auditAll().filter((l) => l.event === 'refusal');
    const unknown = refusals.filter((l) => l.kind === 'auth_unknown_key');
    t.is(unknown.length, 1, 'four unknown keys within 10 s: one line (rate-limited)');
    t.regex(String(unknown[0]?.fingerprint), /^SHA256:/);
    t.regex(String(unknown[0]?.peer), /^127\.0\.0\.1:\d+$/);
    const channels = refusals.filter((l) => l.kind === 'channel_refused').map((l) => String(l.request));
    t.true(channels.includes('sftp') || channels.includes('subsystem'), channels.join(','));
    t.true(channels.includes('pty'), channels.join(','));
    t.true(channels.includes('exec'), 'the oversized command');
    t.is(d.audit().filter((l) => String(l.command).startsWith('status xxx')).length, 0);
    t.log(refusals.map((l) => `${String(l.kind)} ${String(l.request ?? '')} ${String(l.why ?? '')}`).join(' | '));
  } finally {
    await d.stop();
  }
});
