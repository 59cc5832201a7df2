// The fence-agents face's options, read from stdin up to end of file. Read as
// a stream, never with readFileSync(0): touching process.stdin makes a pipe's
// read end non-blocking (libuv), and a sync read of a pipe with nothing in it
// yet then throws EAGAIN. Stream reads wait for data however it comes: from a
// blocking or non-blocking pipe, a file, in pieces, slowly.
import type { Readable } from 'node:stream';

/**
 * How long the options may take to arrive, to end of file. Pacemaker writes
 * them at once and closes the pipe; this only ends a plugin whose stdin is
 * never closed. 5 s, before login_timeout (5 s) and broker_timeout (45 s):
 * 55 s in all, within Pacemaker's default stonith-timeout of 60 s (README
 * "Timeouts: three clocks that nest").
 */
export const STDIN_TIMEOUT_MS = 5_000;

/** More than any option set; a stream without end is not read into memory. */
export const STDIN_MAX_BYTES = 64 * 1024;

/** Everything on `input` up to end of file, as UTF-8; rejects after `timeoutMs` or past `maxBytes`. */
export function readToEnd(input: Readable, timeoutMs = STDIN_TIMEOUT_MS, maxBytes = STDIN_MAX_BYTES): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (e?: Error) => {
      clearTimeout(timer);
      input.off('data', onData).off('end', onEnd).off('error', onError);
      if (e) {
        // Nothing more is wanted from it, and an open stdin would keep the process alive.
        input.destroy();
        reject(e);
      } else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const onData = (b: Buffer | string) => {
      const buf = typeof b === 'string' ? Buffer.from(b) : b;
      size += buf.length;
      if (size > maxBytes) return done(new Error(`stdin: more than ${maxBytes} bytes of options`));
      chunks.push(buf);
    };
    const onEnd = () => done();
    const onError = (e: Error) => done(new Error(`stdin: ${e.message}`, { cause: e }));
    const timer = setTimeout(() => done(new Error(`stdin: options not complete (no end of file) within ${timeoutMs / 1000} s; ${size} bytes read`)), timeoutMs);
    input.on('data', onData).on('end', onEnd).on('error', onError);
  });
}
