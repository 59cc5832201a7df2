// Bundles the guest plugin (plugin/main.ts and what it imports, ssh2 included)
// into one CommonJS file for Node >= 18: plugin/dist/fence_broker, with the
// cluster-glue face as plugin/dist/external/fence-broker (same file).
import { build } from 'esbuild';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'plugin', 'dist', 'fence_broker');
mkdirSync(join(root, 'plugin', 'dist', 'external'), { recursive: true });
// Inside this repo (type: module) the extensionless bundle must still load as CommonJS.
writeFileSync(join(root, 'plugin', 'dist', 'package.json'), '{ "type": "commonjs" }\n');
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
});
chmodSync(out, 0o755);
copyFileSync(out, join(root, 'plugin', 'dist', 'external', 'fence-broker'));
chmodSync(join(root, 'plugin', 'dist', 'external', 'fence-broker'), 0o755);
process.stderr.write(`build-plugin: ${out}\n`);
