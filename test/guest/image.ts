// The real guest's boot files (issue 20): a Debian kernel and a busybox
// initramfs holding Debian's fence_virt, built from Debian's packages and
// cached under .cache/guest/<hash of inputs>/ (git-ignored). Nothing is
// installed on the host: the kernel and busybox-static are fetched with
// `apt-get download` and unpacked from their .deb; fence_virt, the libraries
// ldd names for it and NSS's run-time softokn/freebl libraries come from the
// host's installed fence-virt and libnss3 (scripts/system-setup.sh installs
// them). The whole build is bounded in time.
import { execa, type Options } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { projectPath } from '../../common/paths.js';

/** Bumped when the layout below changes in a way the hashed inputs do not show. */
const BUILDER_VERSION = 1;

export const CACHE_DIR = process.env.FB_GUEST_CACHE ?? projectPath('.cache', 'guest');

export interface GuestImage {
  /** The cache folder holding both files. */
  dir: string;
  kernel: string;
  initrd: string;
  /** The hash of the inputs (the folder's name). */
  key: string;
  /** Whether this call built it (false: found in the cache). */
  built: boolean;
  /** Wall time of this call, ms. */
  ms: number;
}

/**
 * The guest's /init (PID 1). ttyS0 is the control console test/guest/guest.ts
 * drives; ttyS1 is the fence channel, set raw with no getty or shell on it. The
 * shell reads the console through `cat` so that it is not interactive (no line
 * editing echoing what the test writes); the loop keeps PID 1 alive if a
 * command exits that shell.
 */
export const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
ip link set lo up
stty -F /dev/ttyS1 115200 raw -echo
stty -F /dev/ttyS0 115200 -echo
echo FB-GUEST-READY >/dev/ttyS0
while :; do
  cat /dev/ttyS0 | sh >/dev/ttyS0 2>&1
done
`;

/** Why the image cannot be built here, or undefined when it can. */
export async function imageMissing(): Promise<string | undefined> {
  for (const bin of ['apt-get', 'apt-cache', 'dpkg-deb', 'dpkg', 'ldd', 'gzip', 'tar']) {
    const r = await execa('sh', ['-c', `command -v ${bin}`], { reject: false });
    if (r.exitCode !== 0) return `${bin} is not installed`;
  }
  if (process.getuid?.() !== 0) return 'building the guest image needs root (apt-get download into the cache)';
  for (const pkg of ['fence-virt', 'libnss3']) {
    const r = await execa('dpkg-query', ['-W', '-f=${Status}', pkg], { reject: false });
    if (!r.stdout.includes('install ok installed')) return `${pkg} is not installed (scripts/system-setup.sh installs it)`;
  }
  return undefined;
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** Debian's merged /usr: /lib/x → /usr/lib/x, so a file has one place in the image. */
const merged = (p: string): string => p.replace(/^\/(lib|lib64|bin|sbin)\//, '/usr/$1/');

interface Inputs {
  kernelVersion: string;
  busyboxVersion: string;
  fenceVirt: string;
  /** Host file → where it goes in the image (ldd's name, merged), with the file it really is. */
  files: { at: string; real: string; sha: string }[];
}

/** What goes in: package versions apt would fetch now, and the host files copied. */
async function inputs(run: Run): Promise<Inputs> {
  const candidates = async () => {
    const r = await run('apt-cache', ['policy', 'linux-image-amd64', 'busybox-static']);
    const found: Record<string, string> = {};
    let pkg = '';
    for (const line of r.stdout.split('\n')) {
      const head = /^(\S+):$/.exec(line);
      if (head) pkg = head[1] as string;
      const cand = /^\s+Candidate:\s+(\S+)/.exec(line);
      if (cand && cand[1] !== '(none)') found[pkg] = cand[1] as string;
    }
    return found;
  };
  let c = await candidates();
  if (!c['linux-image-amd64'] || !c['busybox-static']) {
    // No package lists yet (a fresh container): fetch them once.
    await run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update', '-qq']);
    c = await candidates();
  }
  const kernelVersion = c['linux-image-amd64'];
  const busyboxVersion = c['busybox-static'];
  if (!kernelVersion || !busyboxVersion) throw new Error(`apt has no candidate for linux-image-amd64 or busybox-static (apt-cache policy: ${JSON.stringify(c)})`);

  const fenceVirt = (await run('dpkg', ['-L', 'fence-virt'])).stdout.split('\n').find((l) => /\/sbin\/fence_virt$/.test(l));
  if (!fenceVirt) throw new Error('dpkg -L fence-virt names no fence_virt binary');
  const wanted = new Set<string>([fenceVirt]);
  for (const line of (await run('ldd', [fenceVirt])).stdout.split('\n')) {
    // "libnss3.so => /lib/x86_64-linux-gnu/libnss3.so (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s+)?(\/\S+)\s+\(0x/.exec(line);
    if (m) wanted.add(m[1] as string);
  }
  // NSS dlopens these at run time (softokn, freebl): ldd cannot see them.
  const nss = (await run('dpkg', ['-L', 'libnss3'])).stdout.split('\n').filter((l) => /\/lib(softokn3|freebl3|freeblpriv3)\.(so|chk)$/.test(l));
  if (!nss.some((l) => l.endsWith('libsoftokn3.so')) || !nss.some((l) => l.endsWith('libfreeblpriv3.so'))) throw new Error(`libnss3 holds no libsoftokn3.so/libfreeblpriv3.so (dpkg -L libnss3 gave: ${nss.join(', ')})`);
  for (const f of nss) wanted.add(f);
  const files = [...wanted].map((at) => {
    const real = realpathSync(at);
    return { at: merged(at), real, sha: sha256(readFileSync(real)) };
  });
  return { kernelVersion, busyboxVersion, fenceVirt: merged(fenceVirt), files };
}

type Run = (cmd: string, args: string[], o?: Options) => Promise<{ stdout: string }>;

/** One Debian package's .deb in the shared download cache, fetched with `apt-get download` when missing. */
async function download(run: Run, pkg: string, version: string): Promise<string> {
  const debs = join(CACHE_DIR, 'debs');
  mkdirSync(debs, { recursive: true });
  const file = join(debs, `${pkg}_${version.replace(/:/g, '%3a')}_amd64.deb`);
  if (existsSync(file)) return file;
  // Into a private folder first: two test processes may fetch at once.
  const tmp = join(debs, `.dl-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp);
  try {
    await run('apt-get', ['download', '-q', `${pkg}=${version}`], { cwd: tmp });
    const got = readdirSync(tmp).find((f) => f.endsWith('.deb'));
    if (!got) throw new Error(`apt-get download ${pkg}=${version} left no .deb`);
    renameSync(join(tmp, got), file);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return file;
}

/**
 * The cached image for the current inputs, built first when missing. Bounded:
 * every step shares one `timeoutMs` budget and is killed when it runs out.
 */
export async function guestImage(timeoutMs = 15 * 60_000): Promise<GuestImage> {
  const t0 = performance.now();
  const signal = AbortSignal.timeout(timeoutMs);
  const run: Run = async (cmd, args, o = {}) => {
    const r = await execa(cmd, args, { reject: false, cancelSignal: signal, env: { LC_ALL: 'C' }, ...o });
    if (r.isCanceled) throw new Error(`guest image: ${cmd} ${args.join(' ')}: the build's ${timeoutMs} ms budget ran out`);
    if (r.exitCode !== 0) throw new Error(`guest image: ${cmd} ${args.join(' ')} exited ${r.exitCode}: ${String(r.stderr).slice(-800)}`);
    return { stdout: String(r.stdout) };
  };
  const inp = await inputs(run);
  const key = sha256(JSON.stringify({ BUILDER_VERSION, INIT, kernel: inp.kernelVersion, busybox: inp.busyboxVersion, files: inp.files.map((f) => [f.at, f.sha]) })).slice(0, 16);
  const dir = join(CACHE_DIR, key);
  const kernel = join(dir, 'vmlinuz');
  const initrd = join(dir, 'initrd.gz');
  if (existsSync(join(dir, 'manifest.json'))) return { dir, kernel, initrd, key, built: false, ms: performance.now() - t0 };

  const work = join(CACHE_DIR, `.build-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(work, { recursive: true });
  try {
    // The kernel: linux-image-amd64 is a metapackage; its Depends names the image package.
    const meta = await download(run, 'linux-image-amd64', inp.kernelVersion);
    const depends = (await run('dpkg-deb', ['-f', meta, 'Depends'])).stdout.trim();
    const dep = /^(linux-image-[^\s,(|]+)(?:\s*\(=\s*([^)\s]+)\))?/.exec(depends);
    if (!dep) throw new Error(`linux-image-amd64 ${inp.kernelVersion}: no linux-image package in its Depends (${depends})`);
    const imagePkg = dep[1] as string;
    const imageVersion = dep[2] ?? inp.kernelVersion;
    const imageDeb = await download(run, imagePkg, imageVersion);
    // Only ./boot is unpacked (the modules are ~400 MB nobody boots here: the
    // image needs none, serial 8250, devtmpfs and gzip initramfs are built in).
    const unpacked = join(work, 'kernel');
    mkdirSync(unpacked);
    await execa('dpkg-deb', ['--fsys-tarfile', imageDeb], { cancelSignal: signal, buffer: { stdout: false } }).pipe('tar', ['-x', '-C', unpacked, '--wildcards', './boot/vmlinuz-*']);
    const vmlinuz = readdirSync(join(unpacked, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error(`${imageDeb} holds no /boot/vmlinuz-*`);

    const bbDeb = await download(run, 'busybox-static', inp.busyboxVersion);
    const bb = join(work, 'busybox');
    await run('dpkg', ['-x', bbDeb, bb]);
    const busybox = join(bb, 'bin', 'busybox');

    // The root: Debian's merged-/usr layout, the files at the paths ldd names.
    const root = join(work, 'root');
    for (const d of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64', 'proc', 'sys', 'dev', 'tmp', 'etc', 'run']) mkdirSync(join(root, d), { recursive: true });
    for (const l of ['bin', 'sbin', 'lib', 'lib64']) symlinkSync(`usr/${l}`, join(root, l));
    copyFileSync(busybox, join(root, 'usr/bin/busybox'));
    chmodSync(join(root, 'usr/bin/busybox'), 0o755);
    for (const f of inp.files) {
      const realAt = merged(f.real);
      const dest = join(root, realAt);
      mkdirSync(dirname(dest), { recursive: true });
      if (!existsSync(dest)) copyFileSync(f.real, dest);
      chmodSync(dest, 0o755);
      if (f.at !== realAt && !existsSync(join(root, f.at))) {
        mkdirSync(dirname(join(root, f.at)), { recursive: true });
        symlinkSync(realAt, join(root, f.at));
      }
    }
    writeFileSync(join(root, 'init'), INIT, { mode: 0o755 });
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\n');

    // newc cpio by busybox-static's own cpio (no host cpio needed), gzipped.
    const files = (await run(busybox, ['find', '.'], { cwd: root })).stdout;
    const out = join(work, 'initrd.gz');
    await execa(busybox, ['cpio', '-o', '-H', 'newc'], { cwd: root, input: files, cancelSignal: signal, buffer: { stdout: false } }).pipe('gzip', ['-n', '-6'], { stdout: { file: out } });
    copyFileSync(join(unpacked, 'boot', vmlinuz), join(work, 'vmlinuz'));
    writeFileSync(
      join(work, 'manifest.json'),
      JSON.stringify({ kernel: `${imagePkg} ${imageVersion} (${vmlinuz})`, busybox: `busybox-static ${inp.busyboxVersion}`, fence_virt: inp.fenceVirt, files: inp.files, built_ms: Math.round(performance.now() - t0) }, null, 2) + '\n',
    );
    const ready = join(CACHE_DIR, `.ready-${process.pid}-${randomBytes(4).toString('hex')}`);
    mkdirSync(ready);
    for (const f of ['vmlinuz', 'initrd.gz', 'manifest.json']) renameSync(join(work, f), join(ready, f));
    try {
      renameSync(ready, dir);
    } catch (err) {
      // Another process finished the same build first: theirs is as good.
      rmSync(ready, { recursive: true, force: true });
      if (!existsSync(join(dir, 'manifest.json'))) throw new Error(`guest image: cannot place ${dir}`, { cause: err });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { dir, kernel, initrd, key, built: true, ms: performance.now() - t0 };
}
