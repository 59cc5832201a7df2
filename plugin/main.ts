// The guest plugin's entry point, bundled into one file that needs only Node ≥ 18
// (scripts/build-plugin.mjs → plugin/dist/). The face is chosen by the name it
// is run under: fence_broker (fence-agents) or fence-broker (cluster-glue).
//   fence_broker --install [--prefix DIR] [--face node|sh]   puts both faces where Pacemaker and
//   cluster-glue look: /usr/sbin/fence_broker, /usr/lib/stonith/plugins/external/fence-broker
//   (with --face sh, the latter is the POSIX sh plugin the bundle carries, which needs no Node)
import { chmodSync, copyFileSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { clusterGlue } from './cluster-glue.js';
import { fenceAgents } from './fence-agents.js';
import { readToEnd } from './stdin.js';

const out = (s: string) => void process.stdout.write(s);
const err = (s: string) => void process.stderr.write(s);

export const INSTALL_PATHS = {
  fenceAgents: join('usr', 'sbin', 'fence_broker'),
  clusterGlue: join('usr', 'lib', 'stonith', 'plugins', 'external', 'fence-broker'),
};

/** plugin/external/fence-broker.sh, put in by scripts/build-plugin.mjs (absent when run unbundled). */
declare const FENCE_BROKER_SH: string | undefined;

function install(argv: string[]): number {
  const i = argv.indexOf('--prefix');
  const prefix = i >= 0 ? argv[i + 1] ?? '' : '/';
  const f = argv.indexOf('--face');
  const face = f >= 0 ? argv[f + 1] : 'node';
  if ((i >= 0 && !prefix) || (face !== 'node' && face !== 'sh')) {
    err('usage: fence_broker --install [--prefix DIR] [--face node|sh]\n');
    return 2;
  }
  const sh = typeof FENCE_BROKER_SH === 'string' ? FENCE_BROKER_SH : undefined;
  if (face === 'sh' && sh === undefined) {
    err('fence_broker: this build carries no sh face; install from the bundle (plugin/dist/fence_broker)\n');
    return 1;
  }
  const self = realpathSync(process.argv[1] as string);
  for (const [which, rel] of Object.entries(INSTALL_PATHS)) {
    const dest = join(prefix, rel);
    mkdirSync(join(dest, '..'), { recursive: true });
    if (which === 'clusterGlue' && face === 'sh') writeFileSync(dest, sh as string);
    else copyFileSync(self, dest);
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
  return fenceAgents(argv, async () => (process.stdin.isTTY ? '' : readToEnd(process.stdin)), out, err);
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
