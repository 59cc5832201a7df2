// `npm run package`: the host release, for a host that has Node >= 20 and
// nothing else (no npm, Go, opa or compiler). Builds
//   dist/release/fence-broker-<version>/         the folder install.sh is run from
//   dist/release/fence-broker-<version>.tar.gz   the same folder, packed
// The folder is laid out as the program tree install.sh copies to
// PREFIX/opt/fence-broker, plus install.sh itself:
//   package.json                  {"type": "module"}: the bundles are ES modules
//   dist/broker/main.js           fence-broker, bundled with every dependency (esbuild)
//   dist/broker/fencectl.js       fencectl, likewise; both import the shared chunk-*.js beside them
//   dist/broker/host-key.js       creates the host key when missing (install.sh runs it)
//   dist/broker/etcd3-proto/      etcd3's .proto files, which it reads when loaded
//   dist/policy/bundle.tar.gz     the prebuilt policy bundle (policy.wasm)
//   schema/clusters.schema.json   read by the config loader
//   plugin/                       the guest plugin: fence_broker, external/fence-broker (Node), external/fence-broker.sh (POSIX sh)
//   contrib/                      systemd unit, logrotate, clusters.example.yaml, Prometheus alert rules
//   man/                          the generated man pages (man8/fencectl.8, fence-broker.8, fence_broker.8; man5/clusters.yaml.5)
//   README.md SECURITY.md BENCHMARKS.md docs/ THIRD-PARTY-LICENSES RELEASE install.sh
// The runtime finds its files from its own location, two folders up
// (common/paths.ts): keeping dist/broker, dist/policy and schema at the same
// relative places as in the repo makes the same code work in both trees.
// Prerequisites (built by scripts/setup.sh): the policy bundle and the plugin.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const name = `fence-broker-${pkg.version}`;
// RELEASE_DIR: elsewhere than dist/release (a test packaging while another does, in parallel).
const releaseDir = process.env.RELEASE_DIR ? resolve(process.env.RELEASE_DIR) : join(root, 'dist', 'release');
const out = join(releaseDir, name);
const tarball = join(releaseDir, `${name}.tar.gz`);

const fail = (msg) => {
  process.stderr.write(`package: ${msg}\n`);
  process.exit(1);
};

// --- prerequisites -----------------------------------------------------------
const bundlePath = join(root, 'dist', 'policy', 'bundle.tar.gz');
const pluginPath = join(root, 'plugin', 'dist', 'fence_broker');
if (!existsSync(bundlePath)) fail(`${bundlePath} is missing; build it with \`npm run setup\` (or \`node dist/broker/policy/build-cli.js\`, which needs opa)`);
const manDir = join(root, 'dist', 'man');
if (!existsSync(join(manDir, 'man8', 'fencectl.8'))) fail(`${manDir} has no man pages; generate them with \`node dist/broker/admin/man-cli.js\` (or \`npm run setup\`)`);
if (!existsSync(pluginPath)) fail(`${pluginPath} is missing; build it with \`node scripts/build-plugin.mjs\``);
// The shipped bundle must be the one of the Rego in this tree: a stale bundle would ship a policy nobody reviewed.
const bundleModule = join(root, 'dist', 'broker', 'policy', 'bundle.js');
if (!existsSync(bundleModule)) fail(`${bundleModule} is missing; compile with \`npx tsc -p tsconfig.json\` (or \`npm run setup\`)`);
const { readBundle, sourceRevision } = await import(bundleModule);
const shipped = await readBundle(bundlePath);
const sources = sourceRevision(join(root, 'policies'));
if (shipped.revision !== sources) fail(`${bundlePath} has revision ${shipped.revision} but policies/ is ${sources}; rebuild it with \`npm run build:policy\``);
// Our fix to ssh2 (patches/) must be in what gets bundled.
if (!readFileSync(join(root, 'node_modules', 'ssh2', 'lib', 'protocol', 'Protocol.js'), 'utf8').includes('fence-broker patch')) {
  fail('node_modules/ssh2 lacks patches/ssh2+1.17.0.patch; run `npx patch-package`');
}

rmSync(out, { recursive: true, force: true });
rmSync(tarball, { force: true });
mkdirSync(join(out, 'dist', 'broker', 'etcd3-proto'), { recursive: true });

// --- the broker and fencectl, bundled -----------------------------------------
// CommonJS dependencies inside an ES module bundle expect require, __filename
// and __dirname; they get the bundle's own. Where a dependency reads a file of
// its package by __dirname when loaded, that file is shipped and the path
// rewritten (etcd3, below); the other such reads (pino's transport workers,
// grpc's channelz/ORCA protos, ssh2's Windows pageant helper) are in code the
// broker never runs.
const banner = [
  "import { createRequire as __fbCreateRequire } from 'node:module';",
  "import { dirname as __fbDirname } from 'node:path';",
  "import { fileURLToPath as __fbFileURLToPath } from 'node:url';",
  'const require = __fbCreateRequire(import.meta.url);',
  'const __filename = __fbFileURLToPath(import.meta.url);',
  'const __dirname = __fbDirname(__filename);',
].join('\n');

const etcdProtoFrom = '`${__dirname}/../proto/rpc.proto`';
const etcdProtoTo = '`${__dirname}/etcd3-proto/rpc.proto`';
const etcdProtos = {
  name: 'etcd3-protos',
  setup(b) {
    b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (text.split(etcdProtoFrom).length !== 2) throw new Error(`${args.path}: expected one ${etcdProtoFrom} to rewrite; etcd3 changed, update scripts/package.mjs`);
      return { contents: text.replace(etcdProtoFrom, etcdProtoTo), loader: 'js' };
    });
  },
};

const result = await build({
  entryPoints: { main: join(root, 'broker', 'main.ts'), fencectl: join(root, 'broker', 'fencectl.ts'), 'host-key': join(root, 'broker', 'host-key.ts') },
  absWorkingDir: root, // the bundles' path comments are relative to the repo, whoever runs this from where
  bundle: true,
  splitting: true, // the two programs share one chunk instead of carrying two copies
  chunkNames: 'chunk-[hash]',
  platform: 'node',
  target: 'node20',
  format: 'esm',
  outdir: join(out, 'dist', 'broker'),
  banner: { js: banner },
  // ssh2's optional native speed-ups: it falls back to pure JS without them (as the plugin does).
  external: ['cpu-features', '*.node'],
  plugins: [etcdProtos],
  metafile: true,
  logLevel: 'warning',
  legalComments: 'eof',
});
const etcdProtoDir = join(root, 'node_modules', 'etcd3', 'proto');
for (const f of readdirSync(etcdProtoDir).filter((f) => f.endsWith('.proto'))) copyFileSync(join(etcdProtoDir, f), join(out, 'dist', 'broker', 'etcd3-proto', f));
for (const entry of ['main.js', 'fencectl.js', 'host-key.js']) chmodSync(join(out, 'dist', 'broker', entry), 0o755);

// --- data, plugin, contrib, docs ----------------------------------------------
const copy = (from, to = from, mode = 0o644) => {
  const dest = join(out, to);
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(join(root, from), dest);
  chmodSync(dest, mode);
};
copy('dist/policy/bundle.tar.gz');
copy('schema/clusters.schema.json');
copy('plugin/dist/fence_broker', 'plugin/fence_broker', 0o755);
copy('plugin/dist/external/fence-broker', 'plugin/external/fence-broker', 0o755);
// The sh face, for nodes without Node.js: copied as /usr/lib/stonith/plugins/external/fence-broker (or fence_broker --install --face sh).
copy('plugin/dist/external/fence-broker.sh', 'plugin/external/fence-broker.sh', 0o755);
// Beside this tree's "type": "module", the extensionless CommonJS plugin must still load as CommonJS.
writeFileSync(join(out, 'plugin', 'package.json'), '{ "type": "commonjs" }\n');
for (const f of readdirSync(manDir, { recursive: true, encoding: 'utf8' }).filter((f) => /\.\d$/.test(f))) copy(join('dist', 'man', f), join('man', f));
copy('contrib/fence-broker.service');
copy('contrib/fence-broker.logrotate');
copy('contrib/clusters.example.yaml');
copy('contrib/fence-broker.rules.yml');
copy('scripts/install.sh', 'install.sh', 0o755);
copy('README.md');
copy('SECURITY.md');
// The rest of the manual, which README.md links to (policies/ stays out: beside the program it means a checkout).
copy('BENCHMARKS.md');
for (const f of readdirSync(join(root, 'docs'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.md'))) copy(join('docs', f));
writeFileSync(
  join(out, 'package.json'),
  JSON.stringify({ name: pkg.name, version: pkg.version, description: pkg.description, license: pkg.license, private: true, type: 'module', engines: pkg.engines }, null, 2) + '\n',
);

// What was built from what: the version, the commit, the policy revision.
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  if (dirty) commit += ' (with uncommitted changes)';
} catch {
  // Not a git checkout (an unpacked source tarball): the version says enough.
}
writeFileSync(
  join(out, 'RELEASE'),
  `fence-broker ${pkg.version}\ncommit ${commit}\npolicy ${shipped.revision} (wasm sha256 ${shipped.sha256})\nnode >= 20\n`,
);

// The licences of everything bundled (MIT/ISC/BSD/Apache ask for their notice to travel with the code).
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^(.*node_modules\/((?:@[^/]+\/)?[^/]+))\//.exec(input);
  if (m) packages.set(m[2], join(root, m[1]));
}
let notices = `Third-party code bundled into dist/broker/*.js (the plugin carries its own notices inline).\n`;
for (const [pkgName, dir] of [...packages].sort(([a], [b]) => a.localeCompare(b))) {
  const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const licenseFile = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  notices += `\n${'='.repeat(78)}\n${pkgName}@${meta.version} (${meta.license ?? 'see below'})\n${'='.repeat(78)}\n`;
  notices += licenseFile ? readFileSync(join(dir, licenseFile), 'utf8').trim() + '\n' : `No licence file in the package; its package.json says: ${meta.license ?? 'nothing'}.\n`;
}
writeFileSync(join(out, 'THIRD-PARTY-LICENSES'), notices);

// --- the tarball ------------------------------------------------------------
// GNU tar: root-owned entries in name order, so the archive does not depend on who built it.
execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-C', releaseDir, '-czf', tarball, name], { stdio: 'inherit' });

const sizeOf = (dir) => readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? sizeOf(join(dir, e.name)) : statSync(join(dir, e.name)).size), 0);
const outputs = Object.entries(result.metafile.outputs).map(([f, o]) => `${relative(out, f)} ${o.bytes}`);
const sha = createHash('sha256').update(readFileSync(tarball)).digest('hex');
process.stdout.write(
  `package: ${relative(root, out)}/ (${sizeOf(out)} bytes; bundles: ${outputs.join(', ')}; ${packages.size} packages bundled)\n` +
    `package: ${relative(root, tarball)} (${statSync(tarball).size} bytes, sha256 ${sha})\n` +
    `package: policy ${shipped.revision}; install with: tar xzf ${name}.tar.gz && sudo ./${name}/install.sh\n`,
);
