// Every admin command on a generated tenancy of 50 clusters (150 nodes, 150
// domains, 2 admins) served by the real daemon: check, explain --all,
// diff-policy on a deliberate one-rule change, keygen, heartbeat, pacemaker
// (its CIB through crm_verify) and reload. What holds on the 3-tenant example
// must hold at a host's real size, and within the bounds an admin would wait.
import test from 'ava';
import { execa } from 'execa';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { POLICIES_DIR } from '../broker/policy/bundle.js';
import { startDaemon, type Daemon } from './broker-daemon.js';
import { fencectl, tempDir } from './helpers.js';

const N = 50;
const name = (i: number) => `c${String(i).padStart(2, '0')}`;

/** 50 clusters of three nodes, node X on domain X; c07 may turn itself off. */
async function fifty(): Promise<Daemon> {
  const clusters: Parameters<typeof startDaemon>[0]['clusters'] = {};
  for (let i = 0; i < N; i++) {
    const c = name(i);
    const doms = ['a', 'b', 'c'].map((x) => `${c}-${x}`);
    clusters[c] = { domains: doms, nodes: Object.fromEntries(doms.map((d) => [d, d])), ...(i === 7 ? { extra: ['allow_self_off: true'] } : {}) };
  }
  return startDaemon({ clusters, admins: ['ops', 'audit'], extraBroker: ['  pid_file: broker.pid'] });
}

/** A copy of policies/ where rule 8 (self_off) spares one cluster: the reviewer's deliberate change. */
function weakenedPolicy(cluster: string): string {
  const dir = join(tempDir('fb-policy-edit-'), 'policies');
  cpSync(POLICIES_DIR, dir, { recursive: true });
  const file = join(dir, 'fencing.rego');
  const text = readFileSync(file, 'utf8');
  const rule = '\tnot _cluster.allow_self_off == true\n';
  if (!text.includes(rule)) throw new Error(`rule 8's body changed: update this test's edit (${file})`);
  writeFileSync(file, text.replace(rule, `${rule}\t_req_cluster != "${cluster}"\n`));
  return dir;
}

test('fencectl on 50 clusters: check, explain --all, diff-policy, keygen, heartbeat, pacemaker and reload', async (t) => {
  const d = await fifty();
  try {
    const check = await fencectl(['check', '--config', d.config]);
    t.is(check.exitCode, 0, check.stderr);
    t.regex(check.stdout, /ok: 50 clusters, 150 domains, 150 nodes, 2 admins; policy rego-\w+/);

    // One node's matrix: its own two peers fully, its own domain only for status (c12 has no self-off); nothing of anyone else's.
    const t0 = performance.now();
    const all = await fencectl(['explain', '--config', d.config, '--as', 'c12/c12-a', '--all', '--json']);
    const explainMs = performance.now() - t0;
    t.is(all.exitCode, 0, all.stderr);
    const cells = (JSON.parse(all.stdout) as { decisions: { action: string; target: string; allow: boolean; codes: string[] }[] }).decisions;
    t.is(cells.length, 2 + 4 * 150);
    const allowed = cells.filter((c) => c.allow).map((c) => `${c.action} ${c.target}`.trim()).sort();
    t.deepEqual(allowed, ['gethosts', 'list', 'off c12-b', 'off c12-c', 'on c12-b', 'on c12-c', 'reset c12-b', 'reset c12-c', 'status c12-a', 'status c12-b', 'status c12-c']);
    t.true(cells.filter((c) => c.target && !c.target.startsWith('c12-')).every((c) => c.codes.join() === 'target_not_owned'));
    t.deepEqual(cells.find((c) => c.action === 'reset' && c.target === 'c12-a')?.codes, ['self_fence']);
    const admin = await fencectl(['explain', '--config', d.config, '--as-admin', 'ops', '--all']);
    t.is(admin.exitCode, 0, admin.stderr);
    t.regex(admin.stdout, /\n152 of 602 allowed\n?$/, 'an admin reads everything and powers nothing');

    // diff-policy: exactly the three nodes of c31 turning themselves off change: allowed now, or, having lost a race, denied for that reason alone.
    const t1 = performance.now();
    const diff = await fencectl(['diff-policy', '--config', d.config, '--old', POLICIES_DIR, '--new', weakenedPolicy('c31'), '--json']);
    const diffMs = performance.now() - t1;
    t.is(diff.exitCode, 1, diff.stderr);
    type Verdict = { allow: boolean; codes: string[] };
    const report = JSON.parse(diff.stdout) as { compared: number; changes: { requester: string; action: string; target: string; facts: { requester_fenced?: boolean }; old: Verdict; new: Verdict }[] };
    const show = (v: Verdict) => (v.allow ? 'allow' : v.codes.join(','));
    t.deepEqual(
      report.changes.map((c) => `${c.requester} ${c.action} ${c.target} fenced=${String(c.facts.requester_fenced)}: ${show(c.old)} -> ${show(c.new)}`),
      ['a', 'b', 'c'].flatMap((x) => [
        `c31/c31-${x} off c31-${x} fenced=false: self_off -> allow`,
        `c31/c31-${x} off c31-${x} fenced=true: fence_race_lost,self_off -> fence_race_lost`,
      ]),
    );
    // Nodes (150, and one unknown per cluster) twice each, one unknown requester, three admins; each over 153 targets.
    t.is(report.compared, (200 * 2 + 1 + 3) * (2 + 4 * 153));
    t.log(`explain --all (602 decisions) ${Math.round(explainMs)} ms; diff-policy (${report.compared} decisions × 2 revisions, one built with opa) ${Math.round(diffMs)} ms`);

    // keygen for a new node of the last cluster; check accepts the config with the printed entry added.
    const out = tempDir('fb-keygen-50-');
    const kg = await fencectl(['keygen', '--config', d.config, '--cluster', 'c49', '--node', 'c49-d', '--out', out]);
    t.is(kg.exitCode, 0, kg.stderr);
    const entry = /^ {6}c49-d: \{ key: "ssh-ed25519 [^"]+" \}/m.exec(kg.stdout)?.[0];
    t.truthy(entry, kg.stdout);
    const grown = readFileSync(d.config, 'utf8')
      .replace('domains: [c49-a, c49-b, c49-c]', 'domains: [c49-a, c49-b, c49-c, c49-d]')
      .replace(/( {6}c49-c: .*\n)/, `$1${entry!}\n`);
    const grownFile = join(d.dir, 'grown.yaml');
    writeFileSync(grownFile, grown);
    const grownCheck = await fencectl(['check', '--config', grownFile]);
    t.is(grownCheck.exitCode, 0, grownCheck.stderr);
    t.regex(grownCheck.stdout, /151 nodes/);

    // heartbeat and pacemaker need the address nodes reach: the port the daemon got.
    const reachable = join(d.dir, 'reachable.yaml');
    writeFileSync(reachable, readFileSync(d.config, 'utf8').replace('127.0.0.1:0', `127.0.0.1:${d.port}`));
    const hb = await fencectl(['heartbeat', '--config', reachable, '--cluster', 'c49']);
    t.is(hb.exitCode, 0, hb.stderr);
    t.is(hb.stdout.trim(), `stonith_host * external/fence-broker 127.0.0.1 ${d.port} fence /etc/fence-broker/id_ed25519 ${d.fingerprint} 45 5`);
    const cib = await fencectl(['pacemaker', '--config', reachable, '--cluster', 'c49']);
    t.is(cib.exitCode, 0, cib.stderr);
    t.is(cib.stdout.match(/<primitive /g)?.length, 3);
    t.is(cib.stdout.match(/<rsc_location /g)?.length, 3);
    t.false(/c48|c50/.test(cib.stdout), 'only c49 appears');
    const cibFile = join(d.dir, 'c49.xml');
    writeFileSync(cibFile, cib.stdout);
    const verify = await execa('crm_verify', ['--xml-file', cibFile], { reject: false });
    t.is(verify.exitCode, 0, verify.stderr);

    // reload the 50-cluster config with one cluster fewer: taken, and c00's nodes are refused from then on.
    writeFileSync(d.config, readFileSync(d.config, 'utf8').replace(/ {2}c00:\n(?: {4}.*\n)+/, ''));
    const reload = await fencectl(['reload', '--config', d.config]);
    t.is(reload.exitCode, 0, reload.stderr);
    t.regex(reload.stdout, new RegExp(`reloaded fence-broker pid ${d.pid}`));
    t.regex(reload.stdout, /3 connections closed|0 connections closed/);
    t.is((await d.ssh('c00-a', 'status c00-b')).exitCode, 255, 'a key of a removed cluster is no longer accepted');
    t.is((await d.ssh('c01-a', 'status c01-b')).exitCode, 0);
  } finally {
    await d.stop();
  }
});
