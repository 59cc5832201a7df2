// `npm run bench -- --quick` runs and writes its report: every section, with
// numbers in it. Benchmarks are not timed tests: the figures' values are never
// checked, only that the run completed and measured each part.
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../common/paths.js';
import { benchMissing } from '../bench/peers.js';
import { NAMES, OFF_HEADING } from '../bench/off-report.js';
import { tempDir } from './helpers.js';

const missing = await benchMissing();
if (missing && process.env.CI === 'true') throw new Error(`CI needs the benchmark's components: ${missing}`);
if (missing) console.error(`bench test skipped here: ${missing}`);
const test = (missing ? anyTest.skip : anyTest) as TestFn;

/** The lines of the markdown section under `heading` (up to the next heading of the same or a higher level). */
function section(md: string, heading: string): string {
  const start = md.indexOf(`\n${heading}\n`);
  if (start < 0) return '';
  const level = /^#+/.exec(heading)?.[0].length ?? 2;
  const rest = md.slice(start + heading.length + 2);
  const next = rest.search(new RegExp(`^#{1,${level}} `, 'm'));
  return next < 0 ? rest : rest.slice(0, next);
}

/** Table rows (not the header or separator) whose first cell matches `first`, each with at least one number. */
const rowsWithNumbers = (text: string, first: RegExp): string[] =>
  text
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|[-:| ]+\|$/.test(l))
    .filter((l) => first.test(l.split('|')[1]?.trim() ?? ''))
    .filter((l) => l.split('|').slice(2).some((c) => /\d/.test(c)));

// One at a time: each starts its own domains, fence_virtd and brokers on the 2 cores.
test.serial('the quick benchmark runs, cleans up and writes every section with figures', async (t) => {
  const out = join(tempDir('fb-bench-test-'), 'BENCHMARKS.md');
  // Generous: the quick run takes about a minute and a half alone on the 2-core machine; far longer when the suite runs beside it.
  const r = await execa(process.execPath, [projectPath('dist', 'bench', 'run.js'), '--quick', '--out', out], { reject: false, timeout: 600_000, all: true });
  t.is(r.exitCode, 0, String(r.all).slice(-4000));
  const md = readFileSync(out, 'utf8');

  for (const h of ['# Benchmarks', '## This run', '## Targets (docs/design.md §9, issue 12)', '## End to end: one real QEMU domain', '### off', '### reboot', '### status', '## Fence storm', '## SSH front door', '## Policy decision', '## Fleet coordination']) {
    t.true(md.includes(`\n${h}`) || md.startsWith(h), `missing heading ${h}`);
  }
  t.regex(section(md, '## This run'), /load average .*\d+\.\d\d/);
  for (const v of ['Node.js', 'libvirt', 'QEMU', 'fence-virt', 'fence-agents', 'OpenSSH']) t.is(rowsWithNumbers(section(md, '## This run'), new RegExp(`^${v}`)).length, 1, `no version of ${v}`);
  t.regex(section(md, '## This run'), /\| fence-broker \| [0-9a-f]{7,}/);
  t.true(rowsWithNumbers(section(md, '## Targets (docs/design.md §9, issue 12)'), /./).length >= 8, 'targets');
  t.false(section(md, '## Targets (docs/design.md §9, issue 12)').includes('not measured'), 'a target was not measured');

  for (const op of ['### off', '### reboot', '### status']) {
    const s = section(md, op);
    for (const sys of [/fence_broker/, /fence_virt`/, /fence_virsh/, /raw `virsh/]) t.is(rowsWithNumbers(s, sys).filter((l) => !l.includes('—')).length >= 1, true, `${op}: no figures for ${sys}`);
  }
  t.is(rowsWithNumbers(section(md, '### status'), /node -e 0/).length, 1);
  // The stock fence_virt clients through the fence_virt door and through fence_virtd (issue 19).
  for (const op of ['### off', '### reboot', '### status']) {
    for (const sys of [/fence_virt -T → fence-broker/, /fence_xvm → fence-broker/, /fence_xvm → fence_virtd/]) t.is(rowsWithNumbers(section(md, op), sys).filter((l) => !l.includes('—')).length, 1, `${op}: no figures for ${sys}`);
  }
  const storm = section(md, '## Fence storm');
  for (const sys of [/fence_broker`/, /fence_xvm → fence-broker/, /fence_virt`/, /fence_virsh/, /raw `virsh destroy`/]) t.is(rowsWithNumbers(storm, sys).length, 1, `storm: ${sys}`);
  const door = section(md, '## SSH front door');
  for (const s of [/fence-broker, sim/, /fence-broker, virsh/, /OpenSSH sshd/]) t.is(rowsWithNumbers(door, s).length, 1, `front door: ${s}`);
  t.is(rowsWithNumbers(section(md, '## Policy decision'), /^[\d,]+$/).length, 3, 'policy rows');
  t.regex(section(md, '## Fleet coordination (`npm run bench:coordination`)'), /etcd/);
  t.true(section(md, OFF_HEADING).length > 0, 'the bench:off section is kept');

  await nothingLeft(t, String(r.all), 6, 8);
});

/**
 * Nothing left behind: no daemon the run started (it names their pids with their start times: the pids wrap
 * around while the suite runs, and a later process given the same pid is not the bench's), no domain of it.
 */
async function nothingLeft(t: ExecutionContext, log: string, daemons: number, domains: number): Promise<void> {
  const started = [...log.matchAll(/\bpid (\d+) \(start (\d+)\)/g)].map((m) => ({ pid: Number(m[1]), start: m[2] as string }));
  t.true(started.length >= daemons, `the bench names its daemons' pids and start times: ${JSON.stringify(started)}`);
  for (const { pid, start } of started) {
    let now: string | undefined;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      now = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    } catch {
      now = undefined; // gone
    }
    t.not(now, start, `daemon pid ${pid} (start ${start}) still runs`);
  }
  const names = /domains (fbt-[^,\s]+(?:, fbt-[^,\s]+)*)/.exec(log)?.[1]?.split(', ') ?? [];
  t.is(names.length, domains, 'the bench names its domains');
  const defined = (await execa('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'], { reject: false })).stdout.split('\n').map((n) => n.trim());
  t.deepEqual(names.filter((n) => defined.includes(n)), [], 'bench domains left defined');
}

test.serial('bench:off --quick runs, cleans up and writes its section with figures for every system', async (t) => {
  const out = join(tempDir('fb-bench-off-test-'), 'BENCHMARKS.md');
  const r = await execa(process.execPath, [projectPath('dist', 'bench', 'off.bench.js'), '--quick', '--out', out], { reject: false, timeout: 600_000, all: true });
  t.is(r.exitCode, 0, String(r.all).slice(-4000));
  const md = section(readFileSync(out, 'utf8'), OFF_HEADING);
  t.regex(md, /quick run/);
  for (const n of NAMES) {
    const label = n === 'virsh (raw)' ? /raw `virsh destroy`/ : new RegExp(n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    t.is(rowsWithNumbers(md, label).filter((l) => !l.includes('—')).length >= 1, true, `no figures for ${n}`);
  }
  t.is(rowsWithNumbers(md, /through fence_virt -T|through fence_xvm/).length, 2, 'both off targets');
  t.regex(md, /reached Broker\.handle [\d.,]+ ms/);
  await nothingLeft(t, String(r.all), 3, 1);
});
