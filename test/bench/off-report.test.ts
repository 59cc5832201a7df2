// bench:off's section (bench/off-report.ts): its ratio interval and where the
// section goes in BENCHMARKS.md. The figures themselves are never checked.
import test from 'ava';
import { OFF_HEADING, ratioInterval, withOffSection } from '../../bench/off-report.js';

test('ratioInterval: equal constant samples give exactly 1; it brackets the ratio of means and is the same every time', (t) => {
  t.deepEqual(ratioInterval([5, 5, 5], [5, 5, 5]), [1, 1]);
  const a = [1_250, 1_450, 1_450, 1_650, 1_250, 2_050, 1_450, 1_250];
  const b = [1_250, 1_250, 1_450, 1_450, 1_650, 1_450, 1_250, 1_450];
  const [lo, hi] = ratioInterval(a, b);
  const point = a.reduce((x, y) => x + y) / a.length / (b.reduce((x, y) => x + y) / b.length);
  t.true(lo < point && point < hi, `${lo} < ${point} < ${hi}`);
  t.deepEqual(ratioInterval(a, b), [lo, hi]);
  t.true(ratioInterval([1], [1, 2]).every(Number.isNaN), 'one sample says nothing about spread');
});

test('withOffSection: replaces its own section only, else goes before the fleet section, else at the end', (t) => {
  const section = `${OFF_HEADING}\n\nnew\n`;
  const fleet = '## Fleet coordination (`npm run bench:coordination`)\n\nfleet\n';
  t.is(withOffSection(`# B\n\n## A\n\na\n\n${OFF_HEADING}\n\nold\n\n${fleet}`, section), `# B\n\n## A\n\na\n\n${section}\n${fleet}`);
  t.is(withOffSection(`# B\n\n## A\n\na\n\n${fleet}`, section), `# B\n\n## A\n\na\n\n${section}\n${fleet}`);
  t.is(withOffSection('# B\n', section), `# B\n\n${section}`);
  t.is(withOffSection(`# B\n\n${OFF_HEADING}\n\nold\n`, section), `# B\n\n${section}`);
});
