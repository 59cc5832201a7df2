// npm run bench — fence-broker beside fence_virt (fence_virtd), fence_virsh
// and raw virsh on real QEMU domains, the SSH front door under load, and the
// policy decision figures; writes BENCHMARKS.md (or --out FILE). Needs root
// (libvirt qemu:///system, sshd, fence_virtd), starts and stops all it uses,
// bounded by a global deadline. `--quick`: a short run that only shows the
// benchmark works (the test suite runs it).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { projectPath } from '../common/paths.js';
import { sweepStale } from '../test/libvirt-host.js';
import { startBenchBroker, startFrontDoorBroker } from './broker.js';
import { createBenchDomains, ensureRunning, removeBenchDomains } from './domains.js';
import { endToEnd } from './e2e.js';
import { brokerStatusOk, hammer, rssKiB, summarize, type FrontDoorRun, type FrontDoorTarget } from './frontdoor.js';
import { Lifecycle } from './lifecycle.js';
import { loadNow, machine } from './machine.js';
import { benchMissing, freePort, startFenceVirtd, startFenceVirtdMulticast, startSshd } from './peers.js';
import { makeLab } from '../test/cluster/netns.js';
import { execa } from 'execa';
import { policyBench } from './policy-run.js';
import { renderReport, type FrontDoorRow, type Settings } from './report.js';
import { ms } from './stats.js';
import { procLabel } from './proc.js';
import { storm } from './storm.js';
import { systems } from './systems.js';
import { Guest } from '../test/guest/guest.js';
import { guestImage } from '../test/guest/image.js';
import { startFenceVirtdSerial } from '../test/guest/fence-virtd.js';
import { removeDomain } from '../test/libvirt-host.js';
import { mkdirSync } from 'node:fs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: projectPath('BENCHMARKS.md') },
    rounds: { type: 'string' },
  },
});
const quick = args.quick === true;
const settings: Settings = quick
  ? { quick, rounds: 1, statusRepeats: 1, stormRounds: 1, stormSize: 8, fdDomains: 1_000, fdKeys: 400, fdClients: 10, fdSlices: 1, fdSliceS: 3, policyIter: 5_000, policyServerIter: 200 }
  : { quick, rounds: 5, statusRepeats: 5, stormRounds: 5, stormSize: 8, fdDomains: 10_000, fdKeys: 4_000, fdClients: 50, fdSlices: 3, fdSliceS: 10, policyIter: 50_000, policyServerIter: 2_000 };
if (args.rounds !== undefined) {
  const n = Number(args.rounds);
  if (!Number.isInteger(n) || n < 1 || n > 50) throw new Error(`--rounds ${args.rounds}: not a count in 1..50`);
  settings.rounds = settings.stormRounds = n;
}
const out = resolve(String(args.out));
const say = (line: string) => process.stderr.write(`bench: ${line}\n`);

const missing = await benchMissing();
if (missing) {
  say(`cannot run: ${missing}`);
  process.exit(3);
}

const started = performance.now();
const life = new Lifecycle(quick ? 8 * 60_000 : 45 * 60_000);
let exitCode = 0;
try {
  life.phase = 'machine and versions';
  const m = await machine();
  say(`${m.cpu}, ${m.cores} cores, load ${m.loadStart}; writing ${out}`);

  const tmp = mkdtempSync(join(tmpdir(), 'fb-bench-'));
  life.defer('remove the temp dir', () => rmSync(tmp, { recursive: true, force: true }));

  life.phase = 'creating domains';
  await sweepStale(); // domains left by bench or test processes that died without cleaning up
  const created: string[] = [];
  life.defer('remove the bench domains', () => removeBenchDomains(created));
  const domains = await life.within('create the bench domains', createBenchDomains(settings.stormSize, (n) => created.push(n)), 180_000);

  life.phase = 'starting fence_virtd, sshd, fence-broker';
  const virtd = await life.within('start fence_virtd', startFenceVirtd(join(tmp, 'fence_virtd'), 30_000), 120_000);
  life.defer('stop fence_virtd', virtd.stop);
  const sshd = await life.within('start sshd', startSshd(join(tmp, 'sshd'), 30_000), 120_000);
  life.defer('stop sshd', sshd.stop);
  // The guests of fence_xvm: one network namespace per tenant on a bridge (no uplink), the host at .1.
  const lab = await life.within('make the guest namespaces', makeLab(domains.length), 60_000);
  life.defer('remove the guest namespaces', lab.remove);
  await execa('ip', ['link', 'set', lab.bridge, 'type', 'bridge', 'mcast_snooping', '0']);
  const guestOf = (d: string): string => {
    const g = lab.nodes[domains.indexOf(d)];
    if (!g) throw new Error(`no guest namespace for ${d}`);
    return g.netns;
  };
  const virtdMulticast = await life.within('start fence_virtd (multicast)', startFenceVirtdMulticast(join(tmp, 'fence_virtd-mcast'), lab.bridge, guestOf(domains[0] as string), 30_000), 120_000);
  life.defer('stop fence_virtd (multicast)', virtdMulticast.stop);
  // The serial channel's guests (issue 20): a real Debian kernel and busybox with fence_virt, no network
  // device, /dev/ttyS1 bound to a socket in fence-broker's channels dir (one guest) or in fence_virtd's (the
  // other, the same image). Two guests, not two ports of one: ttyS2 would share ttyS0's ISA IRQ 4 and
  // stall the console.
  const image = await life.within('build the guest image', guestImage(), 15 * 60_000);
  const channelsDir = join(tmp, 'channels');
  const virtdChannelsDir = join(tmp, 'virtd-channels');
  const guestNames: string[] = [];
  life.defer('remove the serial guests', () => Promise.all(guestNames.map(removeDomain)));
  const [guest, virtdGuest] = await life.within(
    'boot the serial guests',
    Promise.all([
      Guest.boot({ tag: 'bench-serial', image, channelsDir, track: (n) => guestNames.push(n) }),
      Guest.boot({ tag: 'bench-serial-virtd', image, channelsDir: virtdChannelsDir, track: (n) => guestNames.push(n) }),
    ]),
    300_000,
  );
  say(`serial guests ${guest.name}, ${virtdGuest.name} booted in ${ms(guest.bootMs)}, ${ms(virtdGuest.bootMs)} ms (image ${image.built ? 'built' : 'cached'} in ${ms(image.ms)} ms)`);
  const virtdSerialDir = join(tmp, 'fence_virtd-serial');
  mkdirSync(virtdSerialDir, { recursive: true });
  const virtdSerial = startFenceVirtdSerial(virtdSerialDir, virtdChannelsDir);
  life.defer('stop fence_virtd (serial)', virtdSerial.stop);
  const broker = await life.within('start fence-broker', startBenchBroker(domains, { bridge: lab.bridge, multicastPort: await freePort(), serial: { dir: channelsDir, guest: guest.name } }), 120_000);
  life.defer('stop fence-broker', async () => {
    await broker.daemon.stop();
    rmSync(broker.daemon.dir, { recursive: true, force: true });
  });
  // Both serial peers answer their guest before anything is timed (each finds the guest's socket on its own).
  for (const g of [guest, virtdGuest]) {
    await life.within(
      `the serial peer of ${g.name} answers`,
      (async () => {
        for (;;) {
          const r = await g.run(`fence_virt -D /dev/ttyS1 -o status -n ${domains[0]} -t 5`, 30_000);
          if (r.rc === 0) return;
          await new Promise((res) => setTimeout(res, 500));
        }
      })(),
      120_000,
    );
  }
  say(`fence_virtd (multicast) ${procLabel(virtdMulticast.pid)} ${virtdMulticast.group}:${virtdMulticast.port} on ${lab.bridge}; fence-broker fence_virt door 127.0.0.1:${broker.fenceVirt.tcpPort}, ${broker.fenceVirt.group}:${broker.fenceVirt.multicastPort}`);
  say(`fence_virtd ${procLabel(virtd.pid)} :${virtd.port}, sshd ${procLabel(sshd.pid)} :${sshd.port}, fence-broker ${procLabel(broker.daemon.pid)} :${broker.daemon.port}, fence_virtd (serial) ${procLabel(virtdSerial.pid)}; domains ${domains.join(', ')}`);

  const smallBrokerRssKiB = rssKiB(broker.daemon.pid);
  const loads: [string, string][] = [];
  const all = systems({ broker, virtd, virtdMulticast, sshd, guestOf, serialGuest: guest, serialVirtdGuest: virtdGuest });
  loads.push(['end to end', loadNow()]);
  const e2e = await endToEnd(life, all, domains[0] as string, settings.rounds, settings.statusRepeats, broker);
  loads.push(['storm', loadNow()]);
  const stormResult = await storm(life, all, domains, settings.stormRounds, broker);

  // Front door: both fence-broker tenancies and sshd up together, loaded in turn, slice by slice.
  life.phase = 'front door: starting the loaded brokers';
  await life.within('bring the domains back to running', Promise.all(domains.map(ensureRunning)), 120_000);
  const common = { domains: settings.fdDomains, keys: settings.fdKeys, realDomains: domains, clients: settings.fdClients };
  const servers: { row: Omit<FrontDoorRow, 'r'>; target: FrontDoorTarget; runs: FrontDoorRun[] }[] = [];
  for (const toolstack of ['sim', 'virsh'] as const) {
    const t = await life.within(`start fence-broker (${toolstack}, ${settings.fdDomains} domains)`, startFrontDoorBroker({ ...common, toolstack }), 300_000);
    life.defer(`stop fence-broker (${toolstack})`, async () => {
      await t.daemon.stop();
      rmSync(t.daemon.dir, { recursive: true, force: true });
    });
    servers.push({
      row: { label: `fence-broker, ${toolstack}`, startMs: t.startMs, rssReadyKiB: rssKiB(t.daemon.pid) },
      target: { port: t.daemon.port, fingerprint: t.daemon.fingerprint, username: 'fence', pid: t.daemon.pid, clients: t.clients.map((c) => ({ key: c.key, command: `status ${c.target}`, check: brokerStatusOk(c.target) })) },
      runs: [],
    });
    say(`fence-broker (${toolstack}) ${procLabel(t.daemon.pid)} :${t.daemon.port} ready in ${ms(t.startMs)} ms with ${settings.fdDomains} domains, ${settings.fdKeys} keys`);
  }
  const sshKey = Buffer.from(sshd.clientKeyText);
  servers.push({
    row: { label: 'OpenSSH sshd, `true`', rssReadyKiB: rssKiB(sshd.pid) },
    target: { port: sshd.port, fingerprint: sshd.fingerprint, username: 'root', pid: sshd.pid, clients: Array.from({ length: settings.fdClients }, () => ({ key: sshKey, command: 'true', check: (_out: string, code: number | undefined) => (code === 0 ? undefined : `true: exit ${code}`) })) },
    runs: [],
  });
  loads.push(['front door', loadNow()]);
  for (let slice = 0; slice < settings.fdSlices; slice++) {
    for (let i = 0; i < servers.length; i++) {
      const s = servers[(i + slice) % servers.length] as (typeof servers)[number];
      life.phase = `front door slice ${slice + 1}/${settings.fdSlices}: ${s.row.label}`;
      const r = await life.within(life.phase, hammer(s.target, { durationMs: settings.fdSliceS * 1000, requestTimeoutMs: 30_000 }), settings.fdSliceS * 1000 + 90_000);
      s.runs.push(r);
      const sum = summarize(settings.fdClients, [r]);
      say(`front door ${slice + 1}/${settings.fdSlices} ${s.row.label.padEnd(22)} ${sum.rps.toFixed(0)}/s p50 ${ms(sum.p50)} p99 ${ms(sum.p99)} ms, ${r.errors} errors, RSS peak ${(r.rssPeakKiB / 1024).toFixed(0)} MiB`);
    }
  }
  const frontDoor: FrontDoorRow[] = servers.map((s) => ({ ...s.row, r: summarize(settings.fdClients, s.runs) }));

  life.phase = 'stopping domains and daemons before the policy figures';
  await life.cleanup();

  life.phase = 'policy decision figures';
  say('policy decision figures (bench/policy.bench.ts)');
  loads.push(['policy', loadNow()]);
  const policy = await policyBench({ iter: settings.policyIter, serverIter: settings.policyServerIter, timeoutMs: life.boundMs(quick ? 180_000 : 900_000) });

  const report = { settings, date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), durationS: (performance.now() - started) / 1000, machine: m, loads: [...loads, ['end', loadNow()]] as [string, string][], smallBrokerRssKiB, e2e, storm: stormResult, frontDoor, policy };
  writeFileSync(out, renderReport(report));
  say(`wrote ${out} in ${Math.round(report.durationS)} s`);
  // A system that never succeeded has no figure: the run did not measure what it claims.
  const empty = [
    ...Object.entries(e2e).flatMap(([op, m2]) => [...m2].filter(([, s]) => s.ms.length === 0).map(([n]) => `${op} by ${n}`)),
    ...[...stormResult].filter(([, s]) => s.ms.length === 0).map(([n]) => `storm by ${n}`),
    ...frontDoor.filter((f) => f.r.ok === 0).map((f) => `front door of ${f.label}`),
  ];
  if (empty.length) {
    say(`no successful run for: ${empty.join('; ')} (see "Failed runs" in ${out})`);
    exitCode = 1;
  }
} catch (err) {
  say(`failed during "${life.phase}": ${(err as Error).stack ?? String(err)}`);
  exitCode = 1;
} finally {
  await life.cleanup();
  life.end();
}
process.exit(exitCode);

