// fencectl status: asks the running daemon on its status socket
// (broker/status.ts) and words the answer for a person; --json prints it as
// the daemon sent it.
import { connect } from 'node:net';
import { STATUS_REQUEST, type StatusReport } from '../status.js';

/** The daemon did not answer: not running, another socket, or no permission. Exit 1. */
export class NoDaemon extends Error {}

const WHY: Record<string, string> = {
  ENOENT: 'no such socket: is fence-broker running with this config? (broker.status_socket, default status.sock beside the host key)',
  ECONNREFUSED: 'nothing listens on it: fence-broker is not running (a socket left by a daemon that died)',
  EACCES: 'permission denied: the status socket is root\'s (the broker\'s user) only',
  EPERM: 'permission denied: the status socket is root\'s (the broker\'s user) only',
  ECONNRESET: 'it closed the connection without an answer (more status clients at once than it serves? try again)',
};

/** The daemon's report, or NoDaemon naming the socket and why; bounded by `timeoutMs`. */
export function askStatus(path: string, timeoutMs = 10_000): Promise<StatusReport> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let got = '';
    const fail = (why: string, cause?: unknown) => {
      socket.destroy();
      reject(new NoDaemon(`no answer from fence-broker on ${path}: ${why}`, { cause }));
    };
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs / 1000} s`), timeoutMs);
    socket.once('connect', () => socket.write(`${STATUS_REQUEST}\n`));
    socket.on('data', (b: Buffer) => (got += b.toString('utf8')));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(WHY[err.code ?? ''] ?? err.message, err);
    });
    socket.once('end', () => {
      clearTimeout(timer);
      if (got === '') {
        fail('it closed the connection without an answer (more status clients at once than it serves? try again)');
        return;
      }
      let answer: { ok?: boolean; error?: string };
      try {
        answer = JSON.parse(got) as { ok?: boolean; error?: string };
      } catch (err) {
        fail(`the answer is not JSON: ${JSON.stringify(got.slice(0, 80))}`, err);
        return;
      }
      if (answer.ok !== true) fail(`it refused: ${String(answer.error)}`);
      else resolve(answer as StatusReport);
    });
  });
}

/** "3d 04h 05m 06s", leading zero units left out. */
export function duration(totalS: number): string {
  const d = Math.floor(totalS / 86400);
  const h = Math.floor((totalS % 86400) / 3600);
  const m = Math.floor((totalS % 3600) / 60);
  const s = Math.floor(totalS % 60);
  const parts = [d ? `${d}d` : '', d || h ? `${String(h).padStart(d ? 2 : 1, '0')}h` : '', d || h || m ? `${String(m).padStart(d || h ? 2 : 1, '0')}m` : '', `${String(s).padStart(d || h || m ? 2 : 1, '0')}s`];
  return parts.filter(Boolean).join(' ');
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The report as a person reads it: one fact per line, counts first, details indented. */
export function formatStatus(r: StatusReport): string {
  const lines = [
    `fence-broker pid ${r.pid}, up ${duration(r.uptime_s)} (since ${r.started_at})`,
    `config      ${r.config.file}`,
    `            sha256 ${r.config.sha256}, tenancy ${r.config.tenancy}, loaded ${r.config.loaded_at}`,
    `policy      ${r.policy.revision} (wasm sha256 ${r.policy.sha256})`,
    `host key    ${r.host_key}`,
    `toolstack   ${r.toolstack}`,
    `host id     ${r.host_id}`,
    `doors`,
    ...r.doors.map((d) => `  ${d.door.padEnd(10)} ${d.listen}   ${Object.entries(d.connections).map(([k, v]) => `${k.replaceAll('_', ' ')} ${v}`).join(', ')}`),
    `requests in progress: ${r.requests_in_progress}`,
    `fences in flight: ${r.fences_in_flight.length}`,
    ...r.fences_in_flight.map((f) => `  ${f.action} ${f.target} by ${f.cluster !== null ? `${f.cluster}/${f.node ?? '?'}` : `admin ${f.admin ?? '?'}`} via ${f.door}, ${seconds(f.elapsed_ms)} so far (request ${f.request_id})`),
    `coordination: ${r.coordination.describe}`,
  ];
  const c = r.coordination;
  if ('error' in c) lines.push(`  the store did not answer: ${c.error}`);
  else {
    lines.push(`  race marks: ${c.marks.length}`);
    for (const m of c.marks) {
      const state = m.inflight ? 'fence in flight' : m.expiresInMs !== undefined ? `lapses in ${seconds(m.expiresInMs)}` : m.at ? `since ${m.at}` : '';
      lines.push(`    ${m.target} marked by ${m.holder}${state ? `, ${state}` : ''}${m.hostId ? ` (host ${m.hostId})` : ''}`);
    }
    const counted = c.storms.reduce((n, s) => n + s.domains.length, 0);
    lines.push(`  storm counts: ${counted ? c.storms.map((s) => `${s.cluster} ${s.domains.length}`).join(', ') : 'none'}`);
    for (const s of c.storms) lines.push(`    ${s.cluster}: ${s.domains.join(' ')}`);
  }
  return lines.join('\n');
}
