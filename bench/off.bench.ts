// npm run bench:off — `off` of one real QEMU domain through the stock C
// clients, many rounds: fence_virt -T and fence_xvm, each against
// fence-broker's fence_virt door and against fence_virtd, beside raw `virsh
// destroy`; interleaved (the order rotated every round), each on a guest
// brought back to running and settled first. Why a bench of its own: libvirt
// ends the destroy of these TCG guests in steps ~200 ms apart (libvirtd polls
// for QEMU's exit), so the 5 samples of `npm run bench` put a mean anywhere
// within ±10 % and decide the `off` target by chance. Here the ratio of means
// comes with a 95 % interval (bootstrap), and for fence-broker each request's
// audit line says when it reached the broker and how long it was inside. It
// writes its own section of BENCHMARKS.md (or --out), which `npm run bench`
// keeps as it is. `--quick`: two rounds, to show it works (the suite runs it).
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { projectPath } from '../common/paths.js';
import { makeLab } from '../test/cluster/netns.js';
import { sweepStale } from '../test/libvirt-host.js';
import { brokerLine, startBenchBroker } from './broker.js';
import { createBenchDomains, domstate, ensureRunning, removeBenchDomains, settled } from './domains.js';
import { Lifecycle } from './lifecycle.js';
import { loadNow, machine } from './machine.js';
import { benchMissing, freePort, startFenceVirtd, startFenceVirtdMulticast } from './peers.js';
import { failure, procLabel } from './proc.js';
import { ms, rotate } from './stats.js';
import { NAMES, PAIRS, renderOffSection, withOffSection, type OffSample } from './off-report.js';
import { systems, type Peers, type System } from './systems.js';

/** A part of the bench's peers this bench never runs: any use of it is a bug, named. */
const unused = <T>(what: string): T =>
  new Proxy({}, { get: (_t, key) => { throw new Error(`bench:off does not start ${what} (asked for ${String(key)})`); } }) as T;

async function main(): Promise<number> {
  const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string', default: projectPath('BENCHMARKS.md') }, rounds: { type: 'string' } } });
  const quick = args.quick === true;
  const rounds = args.rounds !== undefined ? Number(args.rounds) : quick ? 2 : 30;
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 200) throw new Error(`--rounds ${args.rounds}: not a count in 1..200`);
  const out = resolve(String(args.out));
  const say = (line: string) => process.stderr.write(`bench:off: ${line}\n`);
  const missing = await benchMissing();
  if (missing) {
    say(`cannot run: ${missing}`);
    return 3;
  }
  const life = new Lifecycle(quick ? 6 * 60_000 : 40 * 60_000);
  try {
    const m = await machine();
    const loadStart = m.loadStart;
    say(`${m.cpu}, ${m.cores} cores, load ${loadStart}; ${rounds} rounds; writing ${out}`);
    const tmp = mkdtempSync(join(tmpdir(), 'fb-bench-off-'));
    life.defer('remove the temp dir', () => rmSync(tmp, { recursive: true, force: true }));
    life.phase = 'creating the domain';
    await sweepStale();
    const created: string[] = [];
    life.defer('remove the bench domain', () => removeBenchDomains(created));
    const [domain] = await life.within('create the bench domain', createBenchDomains(1, (n) => created.push(n)), 180_000);
    if (!domain) throw new Error('no bench domain');
    life.phase = 'starting fence_virtd (TCP and multicast) and fence-broker';
    const virtd = await life.within('start fence_virtd', startFenceVirtd(join(tmp, 'fence_virtd'), 30_000), 120_000);
    life.defer('stop fence_virtd', virtd.stop);
    const lab = await life.within('make the guest namespace', makeLab(1), 60_000);
    life.defer('remove the guest namespace', lab.remove);
    await execa('ip', ['link', 'set', lab.bridge, 'type', 'bridge', 'mcast_snooping', '0']);
    const netns = lab.nodes[0]?.netns;
    if (!netns) throw new Error('no guest namespace');
    const virtdMulticast = await life.within('start fence_virtd (multicast)', startFenceVirtdMulticast(join(tmp, 'fence_virtd-mcast'), lab.bridge, netns, 30_000), 120_000);
    life.defer('stop fence_virtd (multicast)', virtdMulticast.stop);
    const broker = await life.within('start fence-broker', startBenchBroker([domain], { bridge: lab.bridge, multicastPort: await freePort() }), 120_000);
    life.defer('stop fence-broker', async () => {
      await broker.daemon.stop();
      rmSync(broker.daemon.dir, { recursive: true, force: true });
    });
    say(`fence_virtd ${procLabel(virtd.pid)} :${virtd.port}, fence_virtd (multicast) ${procLabel(virtdMulticast.pid)}, fence-broker ${procLabel(broker.daemon.pid)}; domains ${domain}`);
    const peers: Peers = { broker, virtd, virtdMulticast, guestOf: () => netns, sshd: unused('sshd'), serialGuest: unused('the serial guests'), serialVirtdGuest: unused('the serial guests') };
    const all = systems(peers);
    const chosen = NAMES.map((n) => {
      const found = all.find((x) => x.name === n);
      if (!found) throw new Error(`no system ${n} in bench/systems.ts`);
      return found;
    });
    const samples = new Map<string, OffSample>(NAMES.map((n) => [n, { ms: [], errors: [], reachMs: [], insideMs: [] }]));
    for (let round = 0; round < rounds; round++) {
      for (const s of rotate<System>(chosen, round)) {
        life.phase = `round ${round + 1}/${rounds}: off by ${s.name}`;
        await life.within(`bring ${domain} back to running`, ensureRunning(domain), 60_000);
        await settled([domain]);
        const epoch = Date.now();
        const r = await s.run('off', domain, life.boundMs(90_000));
        const state = await domstate(domain);
        const sample = samples.get(s.name) as OffSample;
        const err = failure(`${s.name} off`, r) ?? (state === 'shut off' ? undefined : `${s.name} off exited 0 but the domain is "${state}"`);
        if (err) sample.errors.push(err);
        else {
          sample.ms.push(r.ms);
          if (PAIRS.some((p) => p.ours === s.name)) {
            const line = brokerLine(broker, 'off', domain, epoch);
            if (line) {
              sample.reachMs.push(line.at - line.durationMs - epoch);
              sample.insideMs.push(line.durationMs);
            }
          }
        }
        say(`${round + 1}/${rounds} ${s.name.padEnd(30)} ${ms(r.ms).padStart(7)} ms${err ? `  ERROR ${err}` : ''}`);
      }
    }
    const section = renderOffSection({ rounds, quick, date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), commit: m.versions[0]?.[1] ?? '?', load: [loadStart, loadNow()], samples });
    writeFileSync(out, withOffSection(existsSync(out) ? readFileSync(out, 'utf8') : '# Benchmarks\n', section));
    say(`wrote its section of ${out}`);
    const empty = NAMES.filter((n) => (samples.get(n) as OffSample).ms.length === 0);
    if (empty.length) {
      say(`no successful run for: ${empty.join(', ')}`);
      return 1;
    }
    return 0;
  } catch (err) {
    say(`failed during "${life.phase}": ${(err as Error).stack ?? String(err)}`);
    return 1;
  } finally {
    await life.cleanup();
    life.end();
  }
}

process.exit(await main());
