// sd_notify(3) for a Type=notify unit: READY, RELOADING, STOPPING, STATUS and
// the WATCHDOG ping. Node cannot write to the AF_UNIX datagram socket systemd
// listens on (dgram is UDP only), and the npm notifiers are native addons (a
// compiler on every host). So each message is one run of systemd's own
// systemd-notify(1), which exists wherever systemd does and handles path and
// abstract ('@') sockets. As root it sends with this process's pid in the
// credentials, and by default it waits (BARRIER=1) until the manager has read
// the message, so none is lost to the exit of a short-lived sender.
import { execa } from 'execa';

export interface Notifier {
  /** READY=1 (after start-up or a reload) and, once, starts the watchdog ping. */
  ready(status: string): void;
  /** RELOADING=1, before a reload's work starts. */
  reloading(): void;
  /** STOPPING=1; ends the watchdog ping. Resolves when every message was handed over. */
  stopping(): Promise<void>;
}

/** Half of WATCHDOG_USEC, ms, when the watchdog is on and meant for this process (sd_watchdog_enabled(3)). */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

const NONE: Notifier = { ready: () => undefined, reloading: () => undefined, stopping: async () => undefined };

/**
 * The notifier systemd asked for through NOTIFY_SOCKET, or one that does
 * nothing. Takes NOTIFY_SOCKET and WATCHDOG_* out of process.env (as
 * sd_notify's unset_environment does): no child (virsh, xl) can speak for us.
 */
export function systemdNotifier(report: (err: Error) => void, env: NodeJS.ProcessEnv = process.env): Notifier {
  const socket = env.NOTIFY_SOCKET;
  const intervalMs = watchdogIntervalMs(env, process.pid);
  delete env.NOTIFY_SOCKET;
  delete env.WATCHDOG_USEC;
  delete env.WATCHDOG_PID;
  if (!socket) return NONE;
  // One at a time, in order: RELOADING=1 must not overtake the READY=1 before it.
  let queue = Promise.resolve();
  let pending = 0;
  const send = (...assignments: string[]): void => {
    pending++;
    queue = queue.then(async () => {
      const r = await execa('systemd-notify', assignments, { env: { NOTIFY_SOCKET: socket }, extendEnv: false, reject: false, timeout: 10_000 });
      pending--;
      if (r.failed) report(new Error(`systemd-notify ${assignments.join(' ')} to ${socket} failed: ${r.shortMessage}${r.stderr ? `: ${String(r.stderr)}` : ''}`, { cause: r }));
    });
  };
  // From a timer on the event loop: a loop that hangs stops the pings, and
  // systemd kills and restarts the daemon after WatchdogSec=. A ping is skipped
  // while messages are still queued, so a slow manager cannot pile them up.
  let ping: NodeJS.Timeout | undefined;
  return {
    ready(status) {
      send('READY=1', `STATUS=${status.replace(/\n/g, ' ')}`); // one line: a newline would start a new assignment
      if (intervalMs !== undefined && ping === undefined) {
        ping = setInterval(() => pending === 0 && send('WATCHDOG=1'), intervalMs);
        ping.unref();
      }
    },
    // MONOTONIC_USEC: Type=notify-reload (systemd 253+) requires it; uv_hrtime is CLOCK_MONOTONIC.
    reloading: () => send('RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`),
    async stopping() {
      clearInterval(ping);
      send('STOPPING=1');
      await queue;
    },
  };
}
