// The policy bundle: `opa build -t wasm` of policies/ (tests excluded), with a
// revision that is a hash of the Rego sources, so the audit log's revision names
// exactly the text a reviewer read. The broker loads policy.wasm from it.
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import * as tar from 'tar';
import { projectPath } from '../../common/paths.js';
import { verifyBundle } from './signature.js';

export const ENTRYPOINT = 'fencing/decision';
export const POLICIES_DIR = projectPath('policies');
export const DEFAULT_BUNDLE = projectPath('dist', 'policy', 'bundle.tar.gz');

export interface Bundle {
  wasm: Uint8Array;
  revision: string;
  /** sha256 (hex) of policy.wasm: what actually decides. */
  sha256: string;
}

const isSource = (name: string): boolean => name.endsWith('.rego') && !name.endsWith('_test.rego');

/** "rego-" + 16 hex of sha256 over the policy sources (names and contents, sorted). */
export function sourceRevision(dir: string = POLICIES_DIR): string {
  const h = createHash('sha256');
  for (const name of readdirSync(dir).filter(isSource).sort()) {
    h.update(name).update('\0').update(readFileSync(join(dir, name))).update('\0');
  }
  return 'rego-' + h.digest('hex').slice(0, 16);
}

/** Finds the pinned opa (scripts/opa.sh); never installs from the broker. */
export async function findOpa(): Promise<string> {
  const named = process.env.OPA;
  if (named) {
    const hint = 'point $OPA at the opa binary, or unset it to use scripts/opa.sh';
    try {
      if (!statSync(named).isFile()) throw new Error(`$OPA=${named} is not a file; ${hint}`);
      accessSync(named, constants.X_OK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new Error(`$OPA=${named}: no such file; ${hint}`, { cause: e });
      if (code === 'EACCES') throw new Error(`$OPA=${named} is not executable; ${hint}`, { cause: e });
      throw e;
    }
    return named;
  }
  const r = await execa('bash', [projectPath('scripts', 'opa.sh'), '--no-install'], { reject: false });
  if (r.exitCode !== 0) throw new Error(`opa not available: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/**
 * Builds the bundle of the Rego folder `dir` into `out`. Reproducible: opa runs
 * in `dir`'s parent and is given the folder by name alone, so the bundle and
 * the wasm name the sources `policies/fencing.rego`, never this machine's
 * path; opa itself writes the tarball in a fixed order with zero mtimes. Two
 * clones at different paths build the same bytes.
 */
export async function buildBundle(out: string = DEFAULT_BUNDLE, dir: string = POLICIES_DIR): Promise<string> {
  const opa = await findOpa();
  const revision = sourceRevision(dir);
  const target = resolve(out);
  mkdirSync(dirname(target), { recursive: true });
  // Built aside and renamed into place: a concurrent reader never sees half a bundle.
  const tmp = `${target}.${process.pid}.tmp`;
  const r = await execa(
    opa,
    ['build', '-t', 'wasm', '-e', ENTRYPOINT, '-r', revision, '--ignore', '*_test.rego', '-o', tmp, basename(resolve(dir))],
    { reject: false, env: { LC_ALL: 'C' }, timeout: 120_000, cwd: dirname(resolve(dir)) },
  );
  if (r.exitCode !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`opa build failed: ${opaFailure(opa, r)}`);
  }
  renameSync(tmp, target);
  return revision;
}

/** Why an opa run failed: its own words, else how it ended (it could not start, was killed, said nothing). */
export function opaFailure(opa: string, r: { exitCode?: number | undefined; signal?: string | undefined; timedOut: boolean; stdout: unknown; stderr: unknown; originalMessage?: string | undefined }): string {
  const said = (String(r.stderr).trim() || String(r.stdout).trim()).slice(0, 2000);
  if (r.timedOut) return `${opa} timed out${said ? `: ${said}` : ''}`;
  if (r.exitCode === undefined) return `cannot run ${opa}: ${r.signal ? `killed by ${r.signal}` : (r.originalMessage ?? 'failed to start')}`;
  return `${opa} exited ${r.exitCode}${said ? `: ${said}` : ' with no output'}`;
}

/** Every regular file of a bundle tarball, by name without the leading slash. */
async function readFiles(path: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  await tar.t({
    file: path,
    onReadEntry: (entry) => {
      if (entry.type !== 'File') {
        entry.resume();
        return;
      }
      const name = entry.path.replace(/^(\.?\/)+/, '');
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => files.set(name, Buffer.concat(chunks)));
    },
  });
  return files;
}

/**
 * Reads a prebuilt bundle. With a verification key (PEM), the bundle must be
 * signed (OPA's .signatures.json) by it and every file must match its signed
 * hash; anything else is refused.
 */
export async function readBundle(path: string, verificationKey?: string): Promise<Bundle> {
  let files: Map<string, Buffer>;
  try {
    files = await readFiles(path);
  } catch (err) {
    throw new Error(`${path}: cannot read the policy bundle`, { cause: err });
  }
  if (verificationKey !== undefined) await verifyBundle(files, verificationKey, path);
  const wasm = files.get('policy.wasm');
  const manifest = files.get('.manifest');
  if (!wasm) throw new Error(`${path}: no policy.wasm in the bundle`);
  if (!manifest) throw new Error(`${path}: no .manifest in the bundle`);
  const revision = (JSON.parse(manifest.toString('utf8')) as { revision?: unknown }).revision;
  if (typeof revision !== 'string' || revision === '') throw new Error(`${path}: the bundle's .manifest has no revision`);
  return { wasm, revision, sha256: createHash('sha256').update(wasm).digest('hex') };
}

/**
 * The default bundle, rebuilt first when it is missing or older than policies/,
 * or was built before builds were reproducible (its sources under a machine's
 * absolute path, not `policies/`). A stale bundle is never used silently:
 * without opa to rebuild it, this throws.
 */
export async function currentBundle(): Promise<Bundle> {
  const want = sourceRevision();
  if (existsSync(DEFAULT_BUNDLE)) {
    const have = await readBundle(DEFAULT_BUNDLE);
    const names = [...(await readFiles(DEFAULT_BUNDLE)).keys()];
    const reproducible = readdirSync(POLICIES_DIR).filter(isSource).every((f) => names.includes(`policies/${f}`));
    if (have.revision === want && reproducible) return have;
  }
  await buildBundle(DEFAULT_BUNDLE);
  const built = await readBundle(DEFAULT_BUNDLE);
  if (built.revision !== want) throw new Error(`rebuilt bundle has revision ${built.revision}, expected ${want}`);
  return built;
}
