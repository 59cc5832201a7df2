// systemd's notify protocol (sd_notify(3)) from the real daemon: the test plays
// the service manager with an AF_UNIX datagram socket (python3: Node has none)
// that records each message and the sender pid from SCM_CREDENTIALS, as PID 1
// does, and closes the fd of systemd-notify's BARRIER=1 as PID 1 does. The
// daemon's event loop is held on purpose through the V8 inspector the test
// enabled with NODE_OPTIONS (Debugger.pause: the main thread stops, the
// process lives on), which is what a hang in JS or a deadlocked main thread
// looks like from outside: the WATCHDOG pings must stop, and come back after.
import test from 'ava';
import { execa, type ResultPromise } from 'execa';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { systemdNotifier, watchdogIntervalMs } from '../../broker/systemd.js';
import { startDaemon } from '../broker-daemon.js';
import { cleanup, tempDir, until, within } from '../helpers.js';

const PYTHON = '/usr/bin/python3';
const ready = existsSync(PYTHON) && ['/usr/bin/systemd-notify', '/bin/systemd-notify'].some(existsSync);
if (!ready && process.env.CI === 'true') throw new Error('CI needs /usr/bin/python3 and systemd-notify (Debian packages python3 and systemd; scripts/system-setup.sh installs them)');
if (!ready) console.error('systemd test skipped here: python3 or systemd-notify not installed');
const maybe = ready ? test : test.skip;

// One JSON line per datagram; '@name' is an abstract socket, as in NOTIFY_SOCKET.
const MANAGER = `
import array, json, os, socket, struct, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind('\\0' + path[1:] if path.startswith('@') else path)
print(json.dumps({'listening': path}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(64))
    pid = None
    for level, kind, d in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack('iII', d[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for fd in array.array('i', d[:len(d) - len(d) % 4]): os.close(fd)
    print(json.dumps({'pid': pid, 'text': data.decode()}), flush=True)
`;

interface Message { pid: number; text: string }

async function manager(path: string) {
  const proc = execa(PYTHON, ['-c', MANAGER, path], { reject: false, buffer: false, stdin: 'ignore' });
  const messages: Message[] = [];
  const lines = createInterface({ input: proc.stdout! });
  let listening!: () => void;
  const up = new Promise<void>((resolve) => (listening = resolve));
  lines.on('line', (l) => {
    const m = JSON.parse(l) as Message | { listening: string };
    if ('listening' in m) listening();
    else if (m.text !== 'BARRIER=1') messages.push(m); // systemd-notify's own sync, not the daemon's
  });
  await within(`the notify socket ${path}`, Promise.race([up, proc.then((r) => Promise.reject(new Error(`python3 exited ${r.exitCode}`)))]), 30_000);
  const count = (text: string) => messages.filter((m) => m.text === text).length;
  return {
    path,
    messages,
    count,
    /** Until the message log has a message matching `re` after index `from`; its index. */
    async next(re: RegExp, from = 0): Promise<number> {
      await until(`a notify message matching ${re} after #${from}: ${JSON.stringify(messages.slice(from))}`, () => messages.findIndex((m, i) => i >= from && re.test(m.text)) >= 0);
      return messages.findIndex((m, i) => i >= from && re.test(m.text));
    },
    stop: () => proc.kill(),
  };
}

/** The daemon's children that still run (a zombie has finished: its datagram was read). */
function runningChildren(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`)
    .flatMap((tid) => readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number))
    .filter((c) => existsSync(`/proc/${c}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${c}/stat`, 'utf8')));
}

// A CDP client in a child Node (Node 20's WebSocket needs a flag): "paused" once
// the daemon's main thread stopped; "resume" on stdin lets it go.
const INSPECTOR = `
const ws = new WebSocket(process.argv[1]);
let id = 0;
const send = (method) => ws.send(JSON.stringify({ id: ++id, method }));
ws.onopen = () => { send('Debugger.enable'); send('Debugger.pause'); };
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.method === 'Debugger.paused') console.log('paused');
  if (m.method === 'Debugger.resumed') { console.log('resumed'); ws.close(); }
};
process.stdin.on('data', () => send('Debugger.resume'));
`;

function inspector(url: string): { proc: ResultPromise; line: (what: string) => Promise<void> } {
  const proc = execa(process.execPath, ['--experimental-websocket', '--no-warnings', '-e', INSPECTOR, url], { reject: false, buffer: false });
  const seen: string[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => seen.push(l));
  return { proc, line: (what) => until(`the inspector client to say ${what}`, () => seen.includes(what)) };
}

const INTERVAL_MS = 200;

maybe('Type=notify: READY once serving, RELOADING then READY around a good and a bad reload, WATCHDOG from the event loop (stops while it is held), STOPPING', async (t) => {
  const m = await manager(join(tempDir('fb-notify-'), 'notify.sock'));
  const d = await startDaemon({
    clusters: { blue: { domains: ['blue-1', 'blue-2'], nodes: { n1: 'blue-1' } } },
    simDomains: { 'blue-1': 'running', 'blue-2': 'running' },
    env: { NOTIFY_SOCKET: m.path, WATCHDOG_USEC: String(INTERVAL_MS * 2000), NODE_OPTIONS: '--inspect=127.0.0.1:0' },
  });
  let client: ReturnType<typeof inspector> | undefined;
  try {
    const first = await m.next(/^READY=1/);
    t.regex(m.messages[first]!.text, new RegExp(`^READY=1\\nSTATUS=serving on 127\\.0\\.0\\.1:${d.port}; policy \\S+$`));
    t.is(m.messages.slice(0, first).length, 0, 'nothing before READY: the watchdog starts once serving');
    await until('three WATCHDOG pings', () => m.count('WATCHDOG=1') >= 3);
    const status = await d.ssh('n1', 'status blue-2');
    t.is(status.exitCode, 0, `it serves meanwhile: ${status.stdout}`);

    // A reload, good or bad, is bracketed: the unit shows "reloading" until the READY=1.
    let from = m.messages.length;
    t.like(await d.reload((y) => y), { msg: 'reloaded' });
    let r = await m.next(/^RELOADING=1/, from);
    t.regex(m.messages[r]!.text, /^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    t.regex(m.messages[await m.next(/^READY=1/, r)]!.text, /^READY=1\nSTATUS=reloaded; policy \S+$/);
    from = m.messages.length;
    t.regex(String((await d.reload((y) => `${y}bogus: [\n`)).msg), /^reload failed/);
    r = await m.next(/^RELOADING=1/, from);
    t.regex(m.messages[await m.next(/^READY=1/, r)]!.text, /^READY=1\nSTATUS=reload failed, running the previous config: .*clusters\.yaml/);

    // Hold the loop: the pings stop although the process is alive and not stopped.
    const url = /Debugger listening on (ws:\/\/\S+)/.exec(d.logTail(1e6))?.[1];
    if (!url) throw new Error(`no inspector URL in the daemon's log: ${d.logTail()}`);
    client = inspector(url);
    await client.line('paused');
    await until('the ping sent before the pause to finish', () => runningChildren(d.pid).length === 0);
    const held = m.count('WATCHDOG=1');
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS * 10)); // absence over ten intervals is the point
    t.is(m.count('WATCHDOG=1'), held, 'no WATCHDOG while the event loop is held');
    t.regex(readFileSync(`/proc/${d.pid}/stat`, 'utf8'), /^\d+ \(.*\) [SR] /, 'the process itself runs (not SIGSTOPped)');
    client.proc.stdin!.write('resume\n');
    await client.line('resumed');
    await until('WATCHDOG again once the loop runs', () => m.count('WATCHDOG=1') > held);

    await d.stop();
    await m.next(/^STOPPING=1$/);
    const rest = m.messages.filter((x) => x.text !== 'WATCHDOG=1').map((x) => x.text.split('\n')[0]);
    t.deepEqual(rest, ['READY=1', 'RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
    // As root, systemd-notify sends with its caller's pid: PID 1 sees the main process (NotifyAccess=main would do).
    if (process.getuid?.() === 0) t.deepEqual([...new Set(m.messages.map((x) => x.pid))], [d.pid]);
  } finally {
    await cleanup(
      () => client?.proc.kill(),
      () => (d.process.exitCode === null ? d.stop() : undefined),
      () => m.stop(),
    );
  }
});

maybe('systemdNotifier: an abstract socket; the variables leave the environment; a send that fails is reported with the socket', async (t) => {
  const name = `@fb-notify-${process.pid}-${Date.now()}`;
  const m = await manager(name);
  try {
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: name, WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid), OTHER: 'kept' };
    const errors: Error[] = [];
    const n = systemdNotifier((e) => errors.push(e), env);
    t.deepEqual(env, { OTHER: 'kept' }, 'no child inherits the socket');
    n.ready('a\nb');
    await n.stopping();
    await m.next(/^STOPPING=1$/);
    t.deepEqual(m.messages.map((x) => x.text), ['READY=1\nSTATUS=a b', 'STOPPING=1']);
    t.deepEqual(errors, []);

    const missing = join(tempDir('fb-notify-'), 'absent.sock');
    const lost = systemdNotifier((e) => errors.push(e), { NOTIFY_SOCKET: missing });
    await lost.stopping();
    t.is(errors.length, 1);
    t.true(errors[0]!.message.startsWith(`systemd-notify STOPPING=1 to ${missing} failed`), errors[0]!.message);
  } finally {
    m.stop();
  }
});

test('watchdogIntervalMs: half of WATCHDOG_USEC, only for the pid WATCHDOG_PID names (sd_watchdog_enabled)', (t) => {
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: '20000000' }, 7), 10_000);
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '7' }, 7), 10_000);
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '8' }, 7), undefined, 'meant for another process');
  t.is(watchdogIntervalMs({}, 7), undefined);
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' }, 7), undefined);
  t.is(watchdogIntervalMs({ WATCHDOG_USEC: '0' }, 7), undefined);
});
