import test from 'ava';
import { isValidName, nameProblem } from '../common/names.js';
import { parseRequest } from '../common/request.js';

test('names: the strict pattern accepts host-like names and rejects shell, options and overlong', (t) => {
  for (const ok of ['blue-1', 'a', 'vm.example:01', 'X_y-z', '9'.repeat(64)]) t.true(isValidName(ok), ok);
  for (const bad of ['', '-rf', '.hidden', 'a;id', 'a b', 'a/b', '$(id)', 'a\nb', 'é', '9'.repeat(65)]) {
    t.false(isValidName(bad), bad);
    t.truthy(nameProblem(bad), bad);
  }
  t.is(nameProblem(7), 'expected a name (string), got number');
});

test('request grammar: every verb, with and without its domain', (t) => {
  t.deepEqual(parseRequest('list'), { ok: true, request: { verb: 'list' } });
  t.deepEqual(parseRequest('gethosts'), { ok: true, request: { verb: 'gethosts' } });
  for (const verb of ['status', 'on', 'off', 'reset']) {
    t.deepEqual(parseRequest(`${verb} blue-2`), { ok: true, request: { verb, target: 'blue-2' } });
    const missing = parseRequest(verb);
    t.false(missing.ok);
    if (!missing.ok) t.regex(missing.error, /needs a domain/);
  }
});

test('request grammar: malformed requests say what was wrong', (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty request/],
    ['destroy blue-1', /unknown verb "destroy"/],
    ['off blue-1;id', /domain: .* does not match/],
    ['off -f', /domain: .* does not match/],
    ['off a b', /too many words/],
    ['list blue-1', /takes no domain/],
    ['off\tblue-1', /U\+09 at column 4/],
    ['off blue-1\n', /U\+0a/],
    ['off ' + 'a'.repeat(200), /longer than 128/],
  ];
  for (const [line, why] of cases) {
    const r = parseRequest(line);
    t.false(r.ok, JSON.stringify(line));
    if (!r.ok) t.regex(r.error, why, JSON.stringify(line));
  }
});
