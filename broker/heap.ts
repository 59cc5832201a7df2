// V8's heap policy for the daemon, set before anything else is loaded (main.ts
// imports this first; V8's flags are process-wide, so the config worker gets
// them too). --optimize-for-size makes V8 grow the heap less eagerly and give
// memory back sooner. A broker's load is many short SSH handshakes whose
// objects outlive a scavenge or two; by default V8 promotes them and keeps
// growing the old space it never returns. Measured with 10,000 domains,
// 4,000 keys and 50 clients opening a connection per request (bench/
// doors/ssh.ts, 2 x 10 s each): peak RSS 203-214 MB -> 126 MB, requests/s and
// p99 unchanged within the run-to-run noise (392-523/s vs 434-548/s).
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--optimize-for-size');
