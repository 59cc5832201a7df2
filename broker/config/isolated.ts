// Loading a large clusters.yaml in a worker thread, keeping only the result.
// The YAML parse of 10,000 domains and 4,000 keys leaves ~75 MB of garbage
// that V8 keeps mapped after collecting it (measured: RSS +100 MB loaded in
// the daemon's own thread, +25 MB through a worker); a worker's heap is
// returned whole when it exits. The worker runs the daemon's own entry file,
// which answers instead of serving when it finds itself in a worker.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { ConfigError, type Located } from './errors.js';
import { loadConfig, type Config } from './load.js';

type Answer = { ok: true; config: Config } | { ok: false; problems: Located[] } | { ok: false; message: string };

/** loadConfig(file), in a worker started from `entry` (a file that calls answerConfigLoad when not the main thread). */
export function loadConfigIsolated(entry: string, file: string): Promise<Config> {
  return new Promise<Config>((resolve, reject) => {
    const worker = new Worker(entry, { workerData: { fenceBrokerConfig: file } });
    let answered = false;
    worker.once('message', (a: Answer) => {
      answered = true;
      if (a.ok) resolve(a.config);
      else reject('problems' in a ? new ConfigError(a.problems) : new Error(a.message));
    });
    worker.once('error', (err) => reject(new Error(`${file}: the config loader failed: ${err.message}`, { cause: err })));
    worker.once('exit', (code) => {
      if (!answered) reject(new Error(`${file}: the config loader exited (${code}) without an answer`));
    });
  });
}

/** In a worker started by loadConfigIsolated: load, answer, and say so (true); false anywhere else. */
export function answerConfigLoad(): boolean {
  const file = (workerData as { fenceBrokerConfig?: unknown } | null)?.fenceBrokerConfig;
  if (isMainThread || typeof file !== 'string' || !parentPort) return false;
  let answer: Answer;
  try {
    answer = { ok: true, config: loadConfig(file) };
  } catch (e) {
    answer = e instanceof ConfigError ? { ok: false, problems: e.problems } : { ok: false, message: e instanceof Error ? e.message : String(e) };
  }
  parentPort.postMessage(answer);
  return true;
}
