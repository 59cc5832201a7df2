// Every key of clusters.yaml, as the schema has it, appears in the example
// config install.sh installs (commented out where optional) and in the
// reference's clusters.yaml section: a key the docs do not name is a setting
// an admin cannot find. The example, with its optional keys uncommented, must
// also load as written.
import test from 'ava';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../../common/paths.js';
import { loadConfig } from '../../../broker/config/load.js';
import { tempDir } from '../../helpers.js';

type Schema = { properties?: Record<string, Schema>; additionalProperties?: Schema | boolean; allOf?: Schema[]; oneOf?: Schema[]; anyOf?: Schema[]; then?: Schema; else?: Schema };

/** Every key path of the schema ("broker.limits.max_sessions"; "*" for a name the admin picks). */
function keyPaths(s: Schema, at: string[] = []): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(s.properties ?? {})) out.push([...at, k].join('.'), ...keyPaths(v, [...at, k]));
  if (s.additionalProperties && typeof s.additionalProperties === 'object') out.push(...keyPaths(s.additionalProperties, [...at, '*']));
  for (const sub of [...(s.allOf ?? []), ...(s.oneOf ?? []), ...(s.anyOf ?? []), s.then, s.else]) if (sub) out.push(...keyPaths(sub, at));
  return [...new Set(out)];
}

const schema = JSON.parse(readFileSync(projectPath('schema', 'clusters.schema.json'), 'utf8')) as Schema;
const paths = keyPaths(schema);
/** The key as written in YAML, block (`key:`), flow (`{ key:`, `, key:`) or commented out (`# key:`). */
const names = (text: string, key: string): boolean => new RegExp(`(^|[\\s{,#])${key}:`, 'm').test(text);

test('the schema has the keys this test looks for', (t) => {
  // Guards the walk itself: these sit inside if/then, oneOf and additionalProperties.
  for (const p of ['broker.pid_file', 'broker.toolstack.state', 'broker.toolstack.domain_configs', 'broker.coordination.tls.cert', 'clusters.*.nodes.*.domain', 'admins.*.key']) t.true(paths.includes(p), p);
});

test('contrib/clusters.example.yaml names every key of the schema', (t) => {
  const text = readFileSync(projectPath('contrib', 'clusters.example.yaml'), 'utf8');
  const missing = paths.filter((p) => !names(text, p.split('.').at(-1) as string));
  t.deepEqual(missing, [], `keys the example config never names: ${missing.join(', ')}`);
  t.regex(text, /^ {2}pid_file: \/run\/fence-broker\/fence-broker\.pid$/m, 'pid_file is set: fencectl reload and logrotate need it in the foreground');
  t.regex(text, /^ {2}# {3}type: sim$/m, 'the sim toolstack is there to try');
});

test('the clusters.yaml reference names every key of the schema', (t) => {
  // Wherever the reference lives: README.md or a page of docs/.
  const pages = [projectPath('README.md'), ...(existsSync(projectPath('docs')) ? readdirSync(projectPath('docs'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.md')).map((f) => projectPath('docs', f)) : [])];
  const sections = pages.flatMap((page) => {
    const lines = readFileSync(page, 'utf8').split('\n');
    const start = lines.findIndex((l) => /^#+ .*clusters\.yaml/.test(l));
    if (start < 0) return [];
    const level = /^#+/.exec(lines[start] as string)?.[0].length ?? 1;
    const end = lines.findIndex((l, i) => i > start && new RegExp(`^#{1,${level}} `).test(l));
    return [{ page, text: lines.slice(start, end < 0 ? undefined : end).join('\n') }];
  });
  t.true(sections.length > 0, `no section headed clusters.yaml in ${pages.join(', ')}`);
  const missing = paths.filter((p) => !sections.some((s) => names(s.text, p.split('.').at(-1) as string)));
  t.deepEqual(missing, [], `keys the reference (${sections.map((s) => s.page).join(', ')}) never names: ${missing.join(', ')}`);
});

test('the example with its commented-out broker keys switched on still loads', (t) => {
  const text = readFileSync(projectPath('contrib', 'clusters.example.yaml'), 'utf8');
  // Single keys and the timeouts/limits blocks; the alternative toolstacks,
  // coordination and files that need to exist stay off.
  const on = text
    .replace(/^ {2}# (timeouts:|limits:)/gm, '  $1')
    .replace(/^ {2}# {3}(command|verify|fence_race|request|max_\w+|handshake_timeout|idle_timeout):/gm, '    $1:')
    .replace(/^ {2}# (host_id|metrics|fence_virt):/gm, '  $1:')
    .replace(/^ {2}# {3}(listen|key_dir|hash|challenge_hash|read_timeout|unverified_\w+|multicast|channels):/gm, '    $1:')
    .replace(/^ {2}# {5}(groups|port|interface|max_callbacks|connect_timeout|dir|mode|rescan|requests_per_second):/gm, '      $1:')
    .replace(/^ {4}# (allow_self_off|limits):/gm, '    $1:');
  const dir = tempDir('fb-example-');
  const file = join(dir, 'clusters.yaml');
  writeFileSync(file, on.replaceAll('/var/lib/fence-broker', dir).replaceAll('/var/log/fence-broker', dir).replaceAll('/run/fence-broker', dir), { mode: 0o600 });
  const config = loadConfig(file);
  t.is(config.broker.limits.maxPowerPerDomain, 8);
  t.is(config.broker.hostId, 'host-a');
  t.deepEqual(config.clusters.web?.limits, { fencesPerWindow: 1, windowMs: 600_000 });
  t.is(config.broker.pidFile, join(dir, 'fence-broker.pid'));
  t.deepEqual(config.broker.fenceVirt?.multicast, { groups: ['225.0.0.12', 'ff05::3:1'], port: 1229, interface: 'virbr0', maxCallbacks: 32, connectTimeoutMs: 5_000 });
  t.deepEqual(config.broker.fenceVirt?.listen, [{ host: '192.168.122.1', port: 1229 }]);
  t.is(config.broker.fenceVirt?.unverifiedTotal, 500);
  t.deepEqual(config.broker.fenceVirt?.channels, { dir: join(dir, 'channels'), mode: 'serial', rescanMs: 5_000, requestsPerSecond: 2, burst: 5 });
});
