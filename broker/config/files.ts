// Strict files, like sshd's StrictModes (docs/design.md §3.10): what the root
// daemon trusts — its config, the policy bundle and its verification key, the
// host key, the audit log, the sim state — and every directory above them
// must not be writable by group or others, nor owned by another non-root
// user; otherwise someone else could swap them. Directories with the sticky
// bit (/tmp) are allowed: others cannot rename or remove what is in them. The
// host key must be a regular file (no symlink) owned by the broker's user.
import { lstatSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Path } from './locate.js';
import type { Config } from './types.js';

export interface FileProblem {
  /** Where in clusters.yaml the file is named (for the located message). */
  key: Path;
  message: string;
}

interface Trusted {
  path: string;
  what: string;
  key: Path;
  /** Created by the daemon when missing (then only the directories are checked). */
  mayBeMissing: boolean;
  hostKey?: boolean;
  /** A UNIX socket the daemon creates (the metrics): a socket, not a regular file, is expected there. */
  socket?: boolean;
  /**
   * The serial door's channels folder: whoever may write in it may put a socket where a domain's XML
   * points, and speak as that domain. QEMU's group (libvirt-qemu) may need to write there; others never.
   */
  channels?: boolean;
}

const statOrUndefined = (path: string): Stats | undefined => {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
};

/** "group", "others" or "group and others": who may write, by the mode bits. */
const writers = (mode: number): string => [mode & 0o020 ? 'group' : '', mode & 0o002 ? 'others' : ''].filter(Boolean).join(' and ');

function ownerProblem(st: Stats, uid: number): string | undefined {
  return st.uid === 0 || st.uid === uid ? undefined : `owned by uid ${st.uid}, neither root nor the broker's user (uid ${uid})`;
}

/** The trusted files of a config; `defaultBundle` is used when none is configured. */
export function trustedFiles(config: Config, defaultBundle: string): Trusted[] {
  const b = config.broker;
  const files: Trusted[] = [
    { path: config.file, what: 'config', key: [], mayBeMissing: false },
    { path: b.policyBundle ?? defaultBundle, what: 'policy bundle', key: ['broker', 'policy_bundle'], mayBeMissing: false },
    { path: b.hostKey, what: 'host key', key: ['broker', 'host_key'], mayBeMissing: true, hostKey: true },
    { path: b.auditLog, what: 'audit log', key: ['broker', 'audit_log'], mayBeMissing: true },
  ];
  if (b.policyVerificationKey) files.push({ path: b.policyVerificationKey, what: 'policy verification key', key: ['broker', 'policy_verification_key'], mayBeMissing: false });
  if (b.metrics && 'path' in b.metrics.listen) files.push({ path: b.metrics.listen.path, what: 'metrics socket', key: ['broker', 'metrics', 'listen'], mayBeMissing: true, socket: true });
  files.push({ path: b.statusSocket, what: 'status socket', key: ['broker', 'status_socket'], mayBeMissing: true, socket: true });
  if (b.toolstack.type === 'sim') files.push({ path: b.toolstack.state, what: 'sim state', key: ['broker', 'toolstack', 'state'], mayBeMissing: true });
  // Missing is safe (no socket can be there, and the folders above are checked); it is checked again on every reload.
  const channels = b.fenceVirt?.channels;
  if (channels) files.push({ path: channels.dir, what: 'channels folder', key: ['broker', 'fence_virt', 'channels', 'dir'], mayBeMissing: true, channels: true });
  return files;
}

/** Every problem with the trusted files' modes and owners; empty when all is safe. */
export function fileProblems(config: Config, defaultBundle: string, uid: number = process.getuid?.() ?? 0): FileProblem[] {
  const problems: FileProblem[] = [];
  const seenDirs = new Set<string>();
  for (const f of trustedFiles(config, defaultBundle)) {
    const path = resolve(f.path);
    const st = statOrUndefined(path);
    if (!st) {
      if (!f.mayBeMissing) problems.push({ key: f.key, message: `${f.what} ${path} does not exist` });
    } else {
      const say = (m: string) => problems.push({ key: f.key, message: `${f.what} ${path}: ${m}` });
      if (f.channels) {
        if (st.isSymbolicLink()) say('is a symlink; the channels folder must be a directory');
        else if (!st.isDirectory()) say('is not a directory');
        else if (st.mode & 0o002) say(`is writable by others (mode ${(st.mode & 0o777).toString(8)}): anyone could put a socket there and speak as a domain; chmod o-w`);
      } else if (f.hostKey && st.isSymbolicLink()) say('is a symlink; the host key must be a regular file');
      else if (f.socket ? !st.isSocket() : !st.isFile() && !st.isSymbolicLink()) say(f.socket ? 'is not a socket (the daemon replaces only a stale socket of its own)' : 'is not a regular file');
      // A socket's write bit is leave to connect (the metrics socket is 0660 on purpose); the directories guard it.
      if (st.mode & 0o022 && !f.socket && !f.channels) say(`is writable by ${writers(st.mode)} (mode ${(st.mode & 0o777).toString(8)}); chmod go-w`);
      const owner = f.hostKey ? (st.uid === uid ? undefined : `owned by uid ${st.uid}, not the broker's user (uid ${uid})`) : ownerProblem(st, uid);
      if (owner) say(owner);
    }
    // Every directory above, up to /.
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      if (!seenDirs.has(dir)) {
        seenDirs.add(dir);
        const d = statOrUndefined(dir);
        if (d) {
          const sticky = (d.mode & 0o1000) !== 0;
          if (d.mode & 0o022 && !sticky) {
            problems.push({ key: f.key, message: `directory ${dir} above the ${f.what} is writable by ${writers(d.mode)} (mode ${(d.mode & 0o777).toString(8)}); chmod go-w` });
          }
          const owner = ownerProblem(d, uid);
          if (owner) problems.push({ key: f.key, message: `directory ${dir} above the ${f.what} is ${owner}` });
        }
      }
      if (dir === dirname(dir)) break;
    }
  }
  return problems;
}
