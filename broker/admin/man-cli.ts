// Writes the generated man pages (admin/man.ts) into dist/man: run by
// scripts/setup.sh after the plugin is built; `npm run package` ships them and
// install.sh installs them. Build-time only: the release does not carry it.
//   node dist/broker/admin/man-cli.js [OUTDIR]
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../../common/paths.js';
import { CONFIG_NAMES, getoptOf, OPTIONS } from '../../plugin/options.js';
import { ACTIONS, AGENT_LONGDESC, AGENT_SHORTDESC } from '../../plugin/fence-agents.js';
import { FENCE_BROKER, FENCECTL } from './commands.js';
import { agentPage, configPage, programPage, type AgentMetadata, type PageInfo, type Schema } from './man.js';

/** The date of the pages: the commit's (reproducible), else SOURCE_DATE_EPOCH, else today. */
function pageDate(): string {
  if (process.env.SOURCE_DATE_EPOCH) return new Date(Number(process.env.SOURCE_DATE_EPOCH) * 1000).toISOString().slice(0, 10);
  try {
    return execFileSync('git', ['log', '-1', '--format=%cs'], { cwd: projectPath(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || new Date().toISOString().slice(0, 10);
  } catch {
    return new Date().toISOString().slice(0, 10);
  }
}

/** The agent's metadata as fence-agents' page generator reads it: every parameter (deprecated aliases too), the actions. */
export function agentMetadata(): AgentMetadata {
  const sorted = [...OPTIONS].sort((a, b) => a.order - b.order);
  return {
    name: 'fence_broker',
    shortdesc: AGENT_SHORTDESC,
    longdesc: AGENT_LONGDESC,
    parameters: sorted.flatMap((o) => [
      { name: o.name, getopt: getoptOf(o), required: o.required, ...(o.default !== undefined ? { default: o.default } : {}), shortdesc: o.shortdesc, ...(o.deprecatedAlias ? { obsoletes: o.deprecatedAlias } : {}) },
      ...(o.deprecatedAlias ? [{ name: o.deprecatedAlias, getopt: getoptOf(o), required: o.required, shortdesc: `${o.shortdesc} (deprecated name of ${o.name})`, deprecated: true }] : []),
    ]),
    actions: ACTIONS,
    configNames: CONFIG_NAMES,
  };
}

/** Every page: relative path → roff. */
export function pages(): Record<string, string> {
  const pkg = JSON.parse(readFileSync(projectPath('package.json'), 'utf8')) as { version: string };
  const info: PageInfo = { date: pageDate(), version: pkg.version };
  const schema = JSON.parse(readFileSync(projectPath('schema', 'clusters.schema.json'), 'utf8')) as Schema;
  return {
    'man8/fencectl.8': programPage(FENCECTL, info, ['fence-broker(8)', 'clusters.yaml(5)', 'fence_broker(8)']),
    'man8/fence-broker.8': programPage(FENCE_BROKER, info, ['fencectl(8)', 'clusters.yaml(5)', 'fence_broker(8)']),
    'man8/fence_broker.8': agentPage(agentMetadata(), info),
    'man5/clusters.yaml.5': configPage(schema, info),
  };
}

const outDir = process.argv[2] ?? projectPath('dist', 'man');
for (const [rel, text] of Object.entries(pages())) {
  const file = join(outDir, rel);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text);
}
process.stderr.write(`man: ${Object.keys(pages()).map((p) => join(outDir, p)).join(', ')}\n`);
