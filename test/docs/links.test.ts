// The documentation holds together: every relative link and #anchor in
// README.md, SECURITY.md and docs/**/*.md resolves inside the project, with
// anchors made as GitHub makes them from headings; and no file of the project
// names the design brief's path outside it (issue 22: a clone or the release
// tarball has no such folder; the design is docs/design.md).
import test from 'ava';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { PROJECT_ROOT } from '../../common/paths.js';
import { tempDir } from '../helpers.js';

/** GitHub's heading anchor: lower case, punctuation dropped, each space a hyphen. */
function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link renders as its text
    .replace(/<[^>]+>/g, '') // inline HTML renders as nothing
    .replace(/(\*\*|__|\*)/g, ''); // emphasis markers
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The lines of a Markdown file outside fenced code blocks. */
function proseLines(md: string): string[] {
  const out: string[] = [];
  let fence: string | undefined;
  for (const line of md.split('\n')) {
    const m = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (m) {
      const marker = m[1] as string;
      if (fence === undefined) fence = marker;
      else if (marker[0] === fence[0] && marker.length >= fence.length) fence = undefined;
      continue;
    }
    if (fence === undefined) out.push(line);
  }
  return out;
}

/** Every anchor a file offers: its headings (duplicates numbered), and HTML ids and names. */
function anchors(md: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of proseLines(md)) {
    const h = /^\s{0,3}#{1,6}\s+(.*?)(\s+#+)?\s*$/.exec(line);
    if (h) {
      const base = slug(h[1] as string);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      out.add(n === 0 ? base : `${base}-${n}`);
    }
    for (const a of line.matchAll(/<a\s[^>]*(?:id|name)="([^"]+)"/g)) out.add(a[1] as string);
  }
  return out;
}

/** Link targets of a file, with their line numbers: inline links, images and reference definitions. */
function links(md: string): { line: number; target: string }[] {
  const out: { line: number; target: string }[] = [];
  let n = 0;
  let fence: string | undefined;
  for (const raw of md.split('\n')) {
    n++;
    const m = /^\s{0,3}(`{3,}|~{3,})/.exec(raw);
    if (m) {
      const marker = m[1] as string;
      if (fence === undefined) fence = marker;
      else if (marker[0] === fence[0] && marker.length >= fence.length) fence = undefined;
      continue;
    }
    if (fence !== undefined) continue;
    const line = raw.replace(/(`+)[^`]*?\1/g, ''); // code spans are not links
    for (const l of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ line: n, target: l[1] as string });
    const def = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(\s|$)/.exec(line);
    if (def) out.push({ line: n, target: def[1] as string });
  }
  return out;
}

/** What is wrong with the relative links of these files, as FILE:LINE: message; empty when all resolve. */
function checkLinks(root: string, files: string[]): { problems: string[]; checked: number } {
  const problems: string[] = [];
  const anchorCache = new Map<string, Set<string>>();
  const anchorsOf = (file: string): Set<string> => {
    let a = anchorCache.get(file);
    if (!a) anchorCache.set(file, (a = anchors(readFileSync(file, 'utf8'))));
    return a;
  };
  let checked = 0;
  for (const file of files) {
    const where = relative(root, file);
    for (const { line, target } of links(readFileSync(file, 'utf8'))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, file: are not ours to check
      checked++;
      const hash = target.indexOf('#');
      const path = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
      const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
      if (path.startsWith('/')) {
        problems.push(`${where}:${line}: ${target}: not relative (GitHub and the release tree read it differently)`);
        continue;
      }
      const dest = path === '' ? file : resolve(dirname(file), path);
      if (dest !== root && !dest.startsWith(root + sep)) {
        problems.push(`${where}:${line}: ${target}: points outside the project`);
        continue;
      }
      if (!existsSync(dest)) {
        problems.push(`${where}:${line}: ${target}: ${relative(root, dest)} does not exist`);
        continue;
      }
      if (anchor === undefined) continue;
      if (statSync(dest).isDirectory() || !dest.endsWith('.md')) {
        problems.push(`${where}:${line}: ${target}: an anchor into ${relative(root, dest)}, which is no Markdown file`);
      } else if (!anchorsOf(dest).has(anchor)) {
        problems.push(`${where}:${line}: ${target}: no heading in ${relative(root, dest)} has the anchor #${anchor}`);
      }
    }
  }
  return { problems, checked };
}

function markdownUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(dir, f))
    .sort();
}

const docFiles = (): string[] => [
  join(PROJECT_ROOT, 'README.md'),
  join(PROJECT_ROOT, 'SECURITY.md'),
  ...markdownUnder(join(PROJECT_ROOT, 'docs')),
];

test('anchors are made as GitHub makes them', (t) => {
  t.is(slug('Toolstacks and what "fenced" means'), 'toolstacks-and-what-fenced-means');
  t.is(slug('3.8 No one hoards the door'), '38-no-one-hoards-the-door');
  t.is(slug('Timeouts: three clocks that nest'), 'timeouts-three-clocks-that-nest');
  t.is(slug('Under systemd: ready, reload, stop, watchdog'), 'under-systemd-ready-reload-stop-watchdog');
  t.is(slug('`fencectl status` and **more**'), 'fencectl-status-and-more');
  t.is(slug('clusters.yaml: the host\'s configuration'), 'clustersyaml-the-hosts-configuration');
  t.is(slug('Fleet coordination (`npm run bench:coordination`)'), 'fleet-coordination-npm-run-benchcoordination');
  t.is(slug('pid_file and the sim toolstack'), 'pid_file-and-the-sim-toolstack');
});

test('the checker finds a missing file, a missing anchor, a path outside, and ignores code', (t) => {
  const root = tempDir('fb-links-');
  mkdirSync(join(root, 'docs'));
  writeFileSync(join(root, 'docs', 'a.md'), '# A page\n\n## Same\n\n## Same\n');
  writeFileSync(
    join(root, 'README.md'),
    [
      '# Front',
      '[ok](docs/a.md#a-page) [dup](docs/a.md#same-1) [self](#front) [web](https://example.org/x#y)',
      '[gone](docs/b.md) [bad anchor](docs/a.md#nope) [out](../elsewhere/x.md) [abs](/docs/a.md)',
      '`[in code](docs/none.md)`',
      '```',
      '[in a fence](docs/none.md)',
      '```',
      '[ref]: docs/a.md#same-2',
    ].join('\n'),
  );
  const { problems, checked } = checkLinks(root, [join(root, 'README.md')]);
  t.is(checked, 8);
  t.deepEqual(problems, [
    'README.md:3: docs/b.md: docs/b.md does not exist',
    'README.md:3: docs/a.md#nope: no heading in docs/a.md has the anchor #nope',
    'README.md:3: ../elsewhere/x.md: points outside the project',
    'README.md:3: /docs/a.md: not relative (GitHub and the release tree read it differently)',
    'README.md:8: docs/a.md#same-2: no heading in docs/a.md has the anchor #same-2',
  ]);
});

test('every relative link and anchor in README.md, SECURITY.md and docs/ resolves', (t) => {
  const files = docFiles();
  t.true(files.length >= 10, `only ${files.length} documentation files found`);
  const { problems, checked } = checkLinks(PROJECT_ROOT, files);
  t.true(checked >= 50, `only ${checked} relative links checked`);
  t.deepEqual(problems, []);
});

test('no file of the project names the design brief outside it', (t) => {
  const banned = ['..', 'shared'].join('/'); // spelt in pieces, so that this file does not name it
  const skip = new Set(['node_modules', 'dist', '.git', '.tools', '.demo', '.tmp']);
  const offenders: string[] = [];
  let read = 0;
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (!skip.has(e.name)) walk(p);
      } else if (e.isFile()) {
        const text = readFileSync(p);
        if (text.includes(0)) continue; // binary
        read++;
        if (text.toString('utf8').includes(banned)) offenders.push(relative(PROJECT_ROOT, p));
      }
    }
  };
  walk(PROJECT_ROOT);
  t.true(read >= 100, `only ${read} files read`);
  t.deepEqual(offenders, []);
});
