// The generated man pages (broker/admin/man.ts, built into dist/man by
// scripts/setup.sh): each renders with man-db's `man -l` and is clean under
// `mandoc -T lint`; they are what the sources generate now; fence_broker(8)
// lists every parameter the agent's metadata has, clusters.yaml(5) every key
// of the schema, fencectl(8) and fence-broker(8) every command and option of
// their tables.
import test from 'ava';
import { execa } from 'execa';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../common/paths.js';
import { FENCE_BROKER, FENCECTL } from '../../broker/admin/commands.js';
import { live, optionsOf } from '../../broker/admin/cli.js';
import { tempDir } from '../helpers.js';

const MAN_DIR = projectPath('dist', 'man');
const PAGES = ['man5/clusters.yaml.5', 'man8/fence-broker.8', 'man8/fence_broker.8', 'man8/fencectl.8'];

const has = async (cmd: string): Promise<boolean> => (await execa('sh', ['-c', `command -v ${cmd}`], { reject: false })).exitCode === 0;
const missing = [(await has('man')) ? '' : 'man (man-db)', (await has('mandoc')) ? '' : 'mandoc'].filter(Boolean);
if (missing.length && process.env.CI === 'true') throw new Error(`CI needs ${missing.join(', ')} (scripts/system-setup.sh installs them)`);
if (missing.length) console.error(`man page rendering tests skipped here: ${missing.join(', ')} missing`);
const needs = missing.length ? test.skip : test;

/** The page as man-db renders it for a reader: plain text (not a terminal), wide, unhyphenated (.nh). */
async function rendered(rel: string): Promise<string> {
  const r = await execa('man', ['-l', join(MAN_DIR, rel)], { reject: false, env: { MANWIDTH: '250', MANPAGER: 'cat', PAGER: 'cat', LC_ALL: 'C.UTF-8' } });
  if (r.exitCode !== 0 || r.stderr) throw new Error(`man -l ${rel}: exit ${r.exitCode}: ${r.stderr}`);
  // One line per paragraph: words a page wraps are found where they are.
  return r.stdout.replace(/\s+/g, ' ');
}

test('dist/man holds exactly the four pages, as the sources generate them now (never edited by hand)', async (t) => {
  const found = readdirSync(MAN_DIR, { recursive: true, encoding: 'utf8' }).filter((f) => /\.\d$/.test(f)).sort();
  t.deepEqual(found, PAGES);
  const fresh = tempDir('fb-man-');
  const r = await execa('node', [projectPath('dist', 'broker', 'admin', 'man-cli.js'), fresh], { reject: false });
  t.is(r.exitCode, 0, r.stderr);
  for (const p of PAGES) t.is(readFileSync(join(MAN_DIR, p), 'utf8'), readFileSync(join(fresh, p), 'utf8'), `${p} differs from what the sources generate: run scripts/setup.sh`);
  for (const p of PAGES) t.regex(readFileSync(join(MAN_DIR, p), 'utf8'), /^\.\\" Generated from .* do not edit\.$/m);
});

needs('every page renders with man -l and is clean under mandoc -T lint (no message at all, style included)', async (t) => {
  for (const p of PAGES) {
    const lint = await execa('mandoc', ['-T', 'lint', join(MAN_DIR, p)], { reject: false });
    t.is(lint.stdout + lint.stderr, '', `mandoc -T lint ${p}`);
    t.is(lint.exitCode, 0, p);
    const text = await rendered(p);
    for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'SEE ALSO']) t.true(text.includes(` ${section} `) || text.startsWith(section), `${p} has ${section}`);
    t.regex(text, /fence-broker 0\.\d+\.\d+/, `${p} names the release`);
  }
});

needs("fence_broker(8) lists every parameter of the agent's metadata (as the bundled plugin prints it), its getopt form and every action", async (t) => {
  const meta = await execa(projectPath('plugin', 'dist', 'fence_broker'), ['-o', 'metadata'], { reject: false });
  t.is(meta.exitCode, 0, meta.stderr);
  const params = [...meta.stdout.matchAll(/<parameter name="([^"]+)"[^>]*>\s*<getopt mixed="([^"]+)"/g)].map((m) => ({ name: m[1] as string, getopt: (m[2] as string).replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&') }));
  const actions = [...meta.stdout.matchAll(/<action name="([^"]+)"/g)].map((m) => m[1] as string);
  t.true(params.length >= 15, `parameters in the metadata: ${params.length}`);
  const text = await rendered('man8/fence_broker.8');
  const stdinPart = text.slice(text.indexOf(' STDIN PARAMETERS '));
  const flagPart = text.slice(text.indexOf(' PARAMETERS '), text.indexOf(' ACTIONS '));
  const actionPart = text.slice(text.indexOf(' ACTIONS '), text.indexOf(' STDIN PARAMETERS '));
  for (const p of params) {
    t.true(stdinPart.includes(` ${p.name} `), `STDIN PARAMETERS lists ${p.name}`);
    t.true(flagPart.includes(p.getopt), `PARAMETERS lists ${p.getopt}`);
  }
  for (const a of actions) t.true(actionPart.includes(` ${a} `), `ACTIONS lists ${a}`);
  t.regex(stdinPart, /identity_file .*\(Default Value: \/etc\/fence-broker\/id_ed25519\)/, "identity_file's default is the one key path");
});

type Schema = { properties?: Record<string, Schema>; additionalProperties?: Schema | boolean; allOf?: Schema[]; oneOf?: Schema[]; anyOf?: Schema[]; then?: Schema; else?: Schema };

/** Every key path of the schema, walked here on its own ("*" for a name the admin picks). */
function keyPaths(s: Schema, at: string[] = []): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(s.properties ?? {})) out.push([...at, k].join('.'), ...keyPaths(v, [...at, k]));
  if (s.additionalProperties && typeof s.additionalProperties === 'object') out.push(...keyPaths(s.additionalProperties, [...at, '*']));
  for (const sub of [...(s.allOf ?? []), ...(s.oneOf ?? []), ...(s.anyOf ?? []), s.then, s.else]) if (sub) out.push(...keyPaths(sub, at));
  return [...new Set(out)];
}

needs('clusters.yaml(5) covers every key of the schema, each with text', async (t) => {
  const schema = JSON.parse(readFileSync(projectPath('schema', 'clusters.schema.json'), 'utf8')) as Schema;
  const paths = keyPaths(schema);
  t.true(paths.includes('broker.coordination.tls.cert') && paths.includes('clusters.*.nodes.*.domain') && paths.includes('broker.toolstack.uri'), 'the walk reaches oneOf, if/then and named keys');
  const text = await rendered('man5/clusters.yaml.5');
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const p of paths) {
    // A key the admin names shows as <cluster>, <node>, ...; each key is followed by its text.
    const re = new RegExp(` ${p.split('.').map((seg) => (seg === '*' ? '<[a-z_]+>' : escape(seg))).join('\\.')} (?=\\S)`);
    t.regex(text, re, `clusters.yaml(5) has ${p}`);
  }
  t.regex(text, / broker\.pid_file Where the daemon writes its pid/, 'descriptions come from the schema');
});

needs('fencectl(8) and fence-broker(8) name every command and option of their tables; --help of each command lists the same', async (t) => {
  const ctl = await rendered('man8/fencectl.8');
  for (const c of live(FENCECTL.commands)) {
    t.true(ctl.includes(` fencectl ${c.name} `), `synopsis of ${c.name}`);
    const section = ctl.slice(ctl.indexOf(` ${c.name} ${c.summary.slice(0, 20)}`));
    t.not(section, ctl.slice(-1), `a section for ${c.name}`);
    const help = await execa('node', [projectPath('dist', 'broker', 'fencectl.js'), c.name, '--help'], { reject: false });
    t.is(help.exitCode, 0, `${c.name} --help: ${help.stderr}`);
    for (const o of optionsOf(c)) {
      t.true(section.includes(`--${o.name}`), `fencectl(8) ${c.name} has --${o.name}`);
      t.true(help.stdout.includes(`--${o.name}`), `fencectl ${c.name} --help has --${o.name}`);
    }
    for (const o of c.options.filter((x) => x.planned)) t.false(help.stdout.includes(`--${o.name} `), `${c.name} --help leaves the planned --${o.name} out`);
  }
  t.false(/--admin\b/.test(ctl.replace(/--as-admin/g, '')), 'only --as-admin');
  const daemon = await rendered('man8/fence-broker.8');
  for (const o of optionsOf(FENCE_BROKER.commands[0]!)) t.true(daemon.includes(`--${o.name}`), `fence-broker(8) has --${o.name}`);
  t.regex(daemon, / SIGHUP reloads clusters\.yaml/);
});
