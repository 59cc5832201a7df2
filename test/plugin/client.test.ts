// The plugin trusts nothing it cannot check (docs/design.md §3.6): a HOSTILE BROKER
// (an ssh2 server in this process, a test double of the real one, with the
// pinned host key) answers each request with a crafted reply; the plugin's own
// code (plugin/fencing.ts run(), as both faces call it) must turn every
// untrustworthy reply into a failure. checkReply is also called directly.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { fingerprintOf } from '../../common/fingerprint.js';
import { generateEd25519 } from '../../broker/identity/keygen.js';
import { checkReply, type ClientOptions } from '../../plugin/client.js';
import { run } from '../../plugin/fencing.js';
import { parseStdin } from '../../plugin/fence-agents.js';
import { clusterGlue, mapCase } from '../../plugin/cluster-glue.js';
import { createServer } from 'node:net';
import { tempDir } from '../helpers.js';

interface Hostile {
  options: ClientOptions;
  /** What the next exec is answered with: a line of stdout and an exit status. */
  answer: { line: string; exit: number };
  connections: number;
  close(): Promise<void>;
}

async function hostileBroker(): Promise<Hostile> {
  const dir = tempDir('fb-hostile-');
  const host = generateEd25519();
  const client = generateEd25519('node');
  writeFileSync(join(dir, 'id'), client.private, { mode: 0o600 });
  const hostParsed = ssh2.utils.parseKey(host.private);
  if (hostParsed instanceof Error || Array.isArray(hostParsed)) throw new Error('host key');
  const state: Hostile = {
    options: { brokers: [], user: 'fence', identityFile: join(dir, 'id'), hostKeyFingerprints: [fingerprintOf(hostParsed.getPublicSSH())], loginTimeoutMs: 30_000, timeoutMs: 30_000 },
    answer: { line: '{}', exit: 0 },
    connections: 0,
    close: async () => undefined,
  };
  const server = new ssh2.Server({ hostKeys: [host.private] }, (conn) => {
    state.connections++;
    conn.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
    conn.on('ready', () =>
      conn.on('session', (accept) =>
        accept().on('exec', (acceptExec) => {
          const ch = acceptExec();
          if (state.answer.exit < 0) return; // says nothing, keeps the channel open
          ch.write(state.answer.line + '\n');
          ch.exit(state.answer.exit);
          ch.end();
        }),
      ),
    );
    conn.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.options.brokers = [{ host: '127.0.0.1', port: (server.address() as { port: number }).port }];
  state.close = () => new Promise((r) => server.close(() => r()));
  return state;
}

const say = (o: Record<string, unknown>) => JSON.stringify({ message: 'hostile', request_id: 'x', ...o });

test('a hostile broker cannot make the plugin report success, off, or foreign names', async (t) => {
  const h = await hostileBroker();
  try {
    const cases: { name: string; action: 'off' | 'status' | 'on'; line: string; exit?: number }[] = [
      { name: 'another action', action: 'off', line: say({ ok: true, code: 'ok', action: 'on', target: 'vm1', state: 'on' }) },
      { name: 'another target', action: 'off', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm2', state: 'off' }) },
      { name: 'a state off the contract', action: 'off', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'OFF' }) },
      { name: 'ok without action and target', action: 'off', line: say({ ok: true, code: 'ok', state: 'off' }) },
      { name: 'ok with a failure code', action: 'off', line: say({ ok: true, code: 'failed', action: 'off', target: 'vm1', state: 'off' }) },
      { name: 'ok with a failing exit status', action: 'off', line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }), exit: 1 },
      { name: 'an unknown code', action: 'on', line: say({ ok: true, code: 'sure', action: 'on', target: 'vm1', state: 'on' }) },
      { name: 'status without a state', action: 'status', line: say({ ok: true, code: 'ok', action: 'status', target: 'vm1' }) },
      { name: 'status ok but state unknown', action: 'status', line: say({ ok: true, code: 'ok', action: 'status', target: 'vm1', state: 'unknown' }) },
      { name: 'not JSON', action: 'off', line: 'OK, it is off' },
      { name: 'a JSON array', action: 'off', line: '[true]' },
    ];
    for (const c of cases) {
      h.answer = { line: c.line, exit: c.exit ?? 0 };
      const r = await run(h.options, c.action, 'vm1');
      t.false(r.ok, c.name);
      t.not(r.state, 'off', c.name);
      t.regex(r.message, /reply not trusted|unreadable reply/, c.name);
    }

    // A list: names off the pattern are dropped, with a warning; the good ones stay.
    h.answer = { line: say({ ok: true, code: 'ok', action: 'list', target: '', state: 'unknown', domains: ['vm1', 'vm2;reboot', '-rf', '$(id)', 'vm3'] }), exit: 0 };
    const listed = await run(h.options, 'list');
    t.true(listed.ok);
    t.deepEqual(listed.domains, ['vm1', 'vm3']);

    // A trustworthy reply is believed.
    h.answer = { line: say({ ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off' }), exit: 0 };
    t.like(await run(h.options, 'off', 'vm1'), { ok: true, state: 'off' });
  } finally {
    await h.close();
  }
});

test('a missing or unparseable identity file fails at once, before any connection', async (t) => {
  const h = await hostileBroker();
  try {
    const garbage = join(tempDir(), 'id');
    writeFileSync(garbage, 'not a key\n', { mode: 0o600 });
    for (const identityFile of [join(tempDir(), 'absent'), garbage]) {
      const r = await run({ ...h.options, identityFile }, 'off', 'vm1');
      t.false(r.ok);
      t.regex(r.message, /identity file/);
    }
    t.is(h.connections, 0, 'no broker was dialled');
  } finally {
    await h.close();
  }
});

test('checkReply: the rules, called directly', (t) => {
  const warnings: string[] = [];
  const warn = (s: string) => void warnings.push(s);
  const off = { verb: 'off', target: 'vm1' } as const;
  t.is(typeof checkReply(off, { ok: true, code: 'ok', action: 'off', target: 'vm1', state: 'off', message: '' }, 0, warn), 'object');
  t.regex(String(checkReply(off, { ok: 'yes', code: 'ok', action: 'off', target: 'vm1', state: 'off', message: '' }, 0, warn)), /"ok" is not a boolean/);
  t.regex(String(checkReply(off, { ok: false, code: 'busy', action: 'off', target: 'vm1', state: 'maybe', message: '' }, 1, warn)), /state "maybe"/);
  t.like(checkReply(off, { ok: false, code: 'busy', action: 'off', target: 'vm1', state: 'unknown', message: 'busy' }, 1, warn), { ok: false, code: 'busy' });
  t.like(checkReply({ verb: 'gethosts' }, { ok: true, code: 'ok', action: 'gethosts', target: '', state: 'unknown', message: '', domains: ['a', 'b c'] }, 0, warn), { domains: ['a'] });
  t.is(warnings.length, 1);
  t.regex(warnings[0] ?? '', /dropped a domain name off the pattern/);
});

test('the clocks: a broker that never logs in fails after login_timeout; one that never answers, after broker_timeout', async (t) => {
  // The bounds firing is the point: 1 s and 1.5 s.
  const silent = createServer((s) => s.on('error', () => undefined)); // accepts TCP, never speaks SSH
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const h = await hostileBroker();
  try {
    const port = (silent.address() as { port: number }).port;
    const login = await run({ ...h.options, brokers: [{ host: '127.0.0.1', port }], loginTimeoutMs: 1_000, timeoutMs: 60_000 }, 'off', 'vm1');
    t.false(login.ok);
    t.regex(login.message, /no login within 1000 ms|Timed out while waiting for handshake/);
    h.answer = { line: '', exit: -1 }; // the hostile broker keeps the channel open and says nothing
    const answer = await run({ ...h.options, loginTimeoutMs: 30_000, timeoutMs: 1_500 }, 'off', 'vm1');
    t.false(answer.ok);
    t.regex(answer.message, /no answer within 1500 ms/);
  } finally {
    silent.close();
    await h.close();
  }
});

test('a failure names each broker once', async (t) => {
  const h = await hostileBroker();
  try {
    const r = await run({ ...h.options, brokers: [{ host: '127.0.0.1', port: 1 }] }, 'off', 'vm1');
    t.false(r.ok);
    t.is(r.message.split('127.0.0.1:1: ').length - 1, 1, r.message);
  } finally {
    await h.close();
  }
});

test('fence-agents standard names: power_timeout is broker_timeout, login_timeout is known; no warning for either', (t) => {
  const warnings: string[] = [];
  const v = parseStdin('power_timeout=20\nlogin_timeout=3\nport=vm1\n', (s) => void warnings.push(s));
  t.deepEqual(warnings, []);
  t.is(v.broker_timeout, '20');
  t.is(v.login_timeout, '3');
  t.is(v.plug, 'vm1');
});

test('cluster-glue: getinfo-devid has no trailing newline; a lower-cased host maps to the one listed domain it means', async (t) => {
  let out = '';
  t.is(await clusterGlue(['getinfo-devid'], {}, (s) => void (out += s), () => undefined), 0);
  t.is(out, 'fence-broker');
  t.is(mapCase('blue-caps', ['blue-1', 'Blue-Caps']), 'Blue-Caps');
  t.is(mapCase('blue-1', ['blue-1', 'BLUE-1']), 'blue-1', 'an exact match wins');
  t.is(mapCase('x', ['X', 'x2']), 'X');
  t.is(mapCase('dup', ['Dup', 'DUP']), 'dup', 'ambiguous: left as given');
});
