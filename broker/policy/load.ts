// Config → a ready PolicyEngine: a prebuilt bundle (broker.policy_bundle, or
// the project's own built by setup), verified against
// broker.policy_verification_key when one is configured, loaded with the data
// derived from the config. Nothing here builds or compiles: the root daemon
// only ever loads what was built and reviewed elsewhere.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Config } from '../config/load.js';
import type { Located } from '../config/errors.js';
import { buildBundle, DEFAULT_BUNDLE, findOpa, opaFailure, POLICIES_DIR, readBundle, type Bundle } from './bundle.js';
import { policyData } from './data.js';
import { PolicyEngine } from './engine.js';

export async function loadPolicy(config: Config): Promise<PolicyEngine> {
  const path = config.broker.policyBundle ?? DEFAULT_BUNDLE;
  let key: string | undefined;
  if (config.broker.policyVerificationKey) {
    try {
      key = readFileSync(config.broker.policyVerificationKey, 'utf8');
    } catch (err) {
      throw new Error(`policy verification key ${config.broker.policyVerificationKey} cannot be read`, { cause: err });
    }
  }
  const bundle = await readBundle(path, key);
  return PolicyEngine.load(bundle, policyData(config));
}

/**
 * A policy revision a reviewer names: a bundle file as it is, or a folder of
 * Rego sources built (with opa) into a throwaway bundle first.
 */
export async function bundleFrom(path: string): Promise<Bundle> {
  let dir: boolean;
  try {
    dir = statSync(path).isDirectory();
  } catch (err) {
    throw new Error(`${path}: no such bundle or policy folder`, { cause: err });
  }
  if (!dir) return readBundle(path);
  const tmp = mkdtempSync(join(tmpdir(), 'fb-policy-'));
  try {
    await buildBundle(join(tmp, 'bundle.tar.gz'), path);
    return await readBundle(join(tmp, 'bundle.tar.gz'));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** `opa check --strict` of the Rego sources, as located problems (empty when clean). */
export async function checkRego(dir: string = POLICIES_DIR): Promise<Located[]> {
  const opa = await findOpa();
  const r = await execa(opa, ['check', '--strict', '--format', 'json', dir], { reject: false, env: { LC_ALL: 'C' }, timeout: 60_000 });
  if (r.exitCode === 0) return [];
  try {
    const out = JSON.parse(r.stdout || r.stderr) as { errors?: { message: string; code: string; location?: { file: string; row: number; col: number } }[] };
    return (out.errors ?? []).map((e) => ({
      file: e.location?.file ?? dir,
      line: e.location?.row ?? 1,
      col: e.location?.col ?? 1,
      message: `${e.code}: ${e.message}`,
    }));
  } catch {
    return [{ file: dir, line: 1, col: 1, message: `opa check failed: ${opaFailure(opa, r)}` }];
  }
}
