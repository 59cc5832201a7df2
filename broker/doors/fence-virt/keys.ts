// The fence_virt keys: one random key per node, in root-only files outside
// clusters.yaml, at <key_dir>/<cluster>/<node>.key. They are checked as the
// host key is (docs/design.md §3.10): a regular file (no symlink), readable by its
// owner only, owned by root or the broker's user, in directories that are the
// same (0700). A node without a file has no fence_virt identity. The ring is
// rebuilt on every reload, so a key file removed is revoked at the reload.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Config } from '../../config/types.js';
import type { Identity } from '../../identity/index.js';
import { prepareKey, type PreparedKey } from './auth.js';

/** What keygen writes: fence_virtd's own keys are often 4096 bytes; 512 random bytes are more than any hash can use. */
export const KEY_BYTES = 512;
/** fence_virt clients read at most this much of a key file (MAX_KEY_LEN). */
export const MAX_KEY_BYTES = 4096;
/** Fewer bytes than this is no secret worth the name. */
export const MIN_KEY_BYTES = 32;

export interface KeyEntry {
  identity: Extract<Identity, { kind: 'node' }>;
  prepared: PreparedKey;
  file: string;
}

export class KeyProblem extends Error {
  override name = 'KeyProblem';
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
  }
}

/** `fence_virt:SHA256:…` of a key's bytes: names a key in the audit without revealing it (the key is random). */
export const keyFingerprint = (key: Buffer): string => `fence_virt:SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;

export const keyPath = (keyDir: string, cluster: string, node: string): string => join(keyDir, cluster, `${node}.key`);

const statOrUndefined = (path: string): Stats | undefined => {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
};

/** Why `st` (a key file or one of its directories) is not safe, or undefined. */
function modeProblem(path: string, st: Stats, dir: boolean, uid: number): string | undefined {
  const what = dir ? 'key directory' : 'fence_virt key';
  if (st.isSymbolicLink()) return `${what} ${path} is a symlink; it must be a ${dir ? 'directory' : 'regular file'}`;
  if (dir ? !st.isDirectory() : !st.isFile()) return `${what} ${path} is not a ${dir ? 'directory' : 'regular file'}`;
  const mode = st.mode & 0o777;
  if (mode & 0o077) return `${what} ${path} is accessible by group or others (mode ${mode.toString(8)}); chmod ${dir ? '700' : '600'} it`;
  if (st.uid !== 0 && st.uid !== uid) return `${what} ${path} is owned by uid ${st.uid}, neither root nor the broker's user (uid ${uid})`;
  return undefined;
}

/**
 * Why a folder above `keyDir` would let someone else swap the keys, or
 * undefined: writable by group or others without the sticky bit, or owned by
 * another user than root or the broker's (as config/files.ts checks above the
 * config and the host key).
 */
function aboveProblem(keyDir: string, uid: number): string | undefined {
  for (let dir = dirname(resolve(keyDir)); ; dir = dirname(dir)) {
    const st = lstatSync(dir);
    if (st.mode & 0o022 && !(st.mode & 0o1000)) return `folder ${dir} above the key directory is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod go-w it`;
    if (st.uid !== 0 && st.uid !== uid) return `folder ${dir} above the key directory is owned by uid ${st.uid}, neither root nor the broker's user (uid ${uid})`;
    if (dir === dirname(dir)) return undefined;
  }
}

/**
 * The keys of every node of `config` that has a key file under `keyDir`.
 * Throws KeyProblem naming every unsafe file, every key of a wrong size, and
 * any key shared by two nodes (the key is the identity: it must name one).
 */
export function loadKeyRing(config: Pick<Config, 'clusters'>, keyDir: string, uid: number = process.getuid?.() ?? 0): KeyEntry[] {
  const problems: string[] = [];
  const top = statOrUndefined(keyDir);
  if (!top) throw new KeyProblem([`key directory ${keyDir} does not exist (fencectl keygen --fence-virt creates it)`]);
  const topProblem = modeProblem(keyDir, top, true, uid) ?? aboveProblem(keyDir, uid);
  if (topProblem) throw new KeyProblem([topProblem]);
  const entries: KeyEntry[] = [];
  const owners = new Map<string, string>();
  for (const c of Object.values(config.clusters)) {
    const dir = join(keyDir, c.name);
    const st = statOrUndefined(dir);
    if (!st) continue;
    const p = modeProblem(dir, st, true, uid);
    if (p) {
      problems.push(p);
      continue;
    }
    for (const n of Object.values(c.nodes)) {
      const file = keyPath(keyDir, c.name, n.name);
      const fst = statOrUndefined(file);
      if (!fst) continue;
      const fp = modeProblem(file, fst, false, uid);
      if (fp) {
        problems.push(fp);
        continue;
      }
      const key = readFileSync(file);
      if (key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
        problems.push(`fence_virt key ${file} has ${key.length} bytes; expected ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} (fencectl keygen --fence-virt writes ${KEY_BYTES})`);
        continue;
      }
      const fingerprint = keyFingerprint(key);
      const other = owners.get(fingerprint);
      if (other) {
        problems.push(`fence_virt key ${file} is the same key as ${other}; each node needs its own key`);
        continue;
      }
      owners.set(fingerprint, file);
      entries.push({ identity: { kind: 'node', cluster: c.name, node: n.name, domain: n.domain, fingerprint }, prepared: prepareKey(key), file });
    }
  }
  if (problems.length) throw new KeyProblem(problems);
  return entries;
}

/**
 * Writes a new random key for `cluster`/`node` (0600, directories 0700),
 * replacing an existing one only with `force`. Atomic: a reload never sees
 * half a key.
 */
export function writeNodeKey(keyDir: string, cluster: string, node: string, force: boolean): { file: string; fingerprint: string; replaced: boolean } {
  mkdirSync(keyDir, { recursive: true, mode: 0o700 });
  chmodSync(keyDir, 0o700);
  const dir = join(keyDir, cluster);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = keyPath(keyDir, cluster, node);
  const existing = statOrUndefined(file);
  if (existing && !force) throw new Error(`${file} exists; pass --force to replace it (the node's copy must then be replaced too)`);
  if (existing?.isSymbolicLink()) throw new Error(`${file} is a symlink; remove it first`);
  const key = randomBytes(KEY_BYTES);
  const tmp = `${file}.new-${process.pid}`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, key);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  return { file, fingerprint: keyFingerprint(key), replaced: existing !== undefined };
}
