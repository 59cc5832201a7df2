// Bundles the guest plugin (plugin/main.ts and what it imports, ssh2 included)
// into one CommonJS file for Node >= 18: plugin/dist/fence_broker, with the
// cluster-glue face as plugin/dist/external/fence-broker (same file). The sh
// face (plugin/external/fence-broker.sh) is checked against the option table
// (its generated block must be what plugin/cluster-glue.ts shBlock() says;
// `--update-sh` rewrites it), copied to plugin/dist/external/fence-broker.sh
// and carried inside the bundle for `fence_broker --install --face sh`.
// Needs the compiled tree (npx tsc) for shBlock().
import { build } from 'esbuild';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'plugin', 'dist', 'fence_broker');

const shPath = join(root, 'plugin', 'external', 'fence-broker.sh');
const { shBlock } = await import(join(root, 'dist', 'plugin', 'cluster-glue.js'));
let sh = readFileSync(shPath, 'utf8');
const block = /(# BEGIN generated[^\n]*\n)([^]*?)(# END generated\n)/.exec(sh);
if (!block) throw new Error(`${shPath}: no "# BEGIN generated" … "# END generated" block`);
if (block[2] !== shBlock()) {
  if (!process.argv.includes('--update-sh')) {
    process.stderr.write(`build-plugin: ${shPath}: its generated block differs from plugin/options.ts; run \`node scripts/build-plugin.mjs --update-sh\` and review the diff\n`);
    process.exit(1);
  }
  sh = sh.replace(block[0], block[1] + shBlock() + block[3]);
  writeFileSync(shPath, sh);
  process.stderr.write(`build-plugin: rewrote the generated block of ${shPath}\n`);
}
mkdirSync(join(root, 'plugin', 'dist', 'external'), { recursive: true });
// Inside this repo (type: module) the extensionless bundle must still load as
// CommonJS. The guest side needs only Node >= 18 (test/plugin/node18.test.ts).
writeFileSync(join(root, 'plugin', 'dist', 'package.json'), '{ "type": "commonjs", "engines": { "node": ">=18" } }\n');
await build({
  entryPoints: [join(root, 'plugin', 'main.ts')],
  bundle: true,
  platform: 'node',
  target: 'node18',
  format: 'cjs',
  outfile: out,
  banner: { js: '#!/usr/bin/env node' },
  // ssh2's optional native speed-ups; it falls back to pure JS without them.
  external: ['cpu-features', '*.node'],
  logLevel: 'warning',
  legalComments: 'inline',
  // The release's version for --version: the guest has no package.json to read it from.
  define: { FENCE_BROKER_SH: JSON.stringify(sh), FENCE_BROKER_VERSION: JSON.stringify(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version) },
});
chmodSync(out, 0o755);
copyFileSync(out, join(root, 'plugin', 'dist', 'external', 'fence-broker'));
chmodSync(join(root, 'plugin', 'dist', 'external', 'fence-broker'), 0o755);
writeFileSync(join(root, 'plugin', 'dist', 'external', 'fence-broker.sh'), sh, { mode: 0o755 });
chmodSync(join(root, 'plugin', 'dist', 'external', 'fence-broker.sh'), 0o755);
process.stderr.write(`build-plugin: ${out}\n`);
