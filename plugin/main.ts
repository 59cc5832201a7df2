// The guest plugin's entry point, bundled into one file that needs only Node ≥ 18
// (scripts/build-plugin.mjs → plugin/dist/). The face is chosen by the name it
// is run under: fence_broker (fence-agents) or fence-broker (cluster-glue).
//   fence_broker --install [--prefix DIR]   puts both faces where Pacemaker and
//   cluster-glue look: /usr/sbin/fence_broker, /usr/lib/stonith/plugins/external/fence-broker
import { chmodSync, copyFileSync, mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { clusterGlue } from './cluster-glue.js';
import { fenceAgents } from './fence-agents.js';

const out = (s: string) => void process.stdout.write(s);
const err = (s: string) => void process.stderr.write(s);

export const INSTALL_PATHS = {
  fenceAgents: join('usr', 'sbin', 'fence_broker'),
  clusterGlue: join('usr', 'lib', 'stonith', 'plugins', 'external', 'fence-broker'),
};

function install(argv: string[]): number {
  const i = argv.indexOf('--prefix');
  const prefix = i >= 0 ? argv[i + 1] ?? '' : '/';
  if (i >= 0 && !prefix) {
    err('usage: fence_broker --install [--prefix DIR]\n');
    return 2;
  }
  const self = realpathSync(process.argv[1] as string);
  for (const rel of Object.values(INSTALL_PATHS)) {
    const dest = join(prefix, rel);
    mkdirSync(join(dest, '..'), { recursive: true });
    copyFileSync(self, dest);
    // cluster-glue refuses plugins writable by group or others.
    chmodSync(dest, 0o755);
    out(`installed ${dest}\n`);
  }
  return 0;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--install') return install(argv.slice(1));
  const name = basename(process.argv[1] ?? '');
  if (name === 'fence-broker') return clusterGlue(argv, process.env, out, err);
  return fenceAgents(argv, async () => (process.stdin.isTTY ? '' : readStdin()), out, err);
}

/** All of stdin, read as a stream: readFileSync(0) fails with EAGAIN when the pipe it inherited is non-blocking and not yet written. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    err(`Failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
