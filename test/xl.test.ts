// The xl executor against a TEST DOUBLE of xl (test/doubles/fake-xl) that
// reproduces xl's documented outputs; no Xen host can run here.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fencer } from '../broker/fencer.js';
import { parseXlLong, parseXlTable, xlObserved, XlToolstack } from '../broker/toolstack/xl.js';
import { makeDouble } from './doubles.js';

const xl = (opts: { rc?: 1 | 2; long?: 'json' | 'sxp' } = {}) => {
  const fake = makeDouble('fake-xl');
  fake.setFile('invalid_rc', String(opts.rc ?? 1));
  fake.setFile('long', opts.long ?? 'json');
  const toolstack = new XlToolstack(30_000, { command: fake.command, configDir: fake.dir });
  return { fake, toolstack, fencer: new Fencer(toolstack, { verifyMs: 1_000, pollMs: 50 }) };
};

test('parsers: the list table (tabs, names with spaces), -l JSON and SXP, the state flags', (t) => {
  const table = 'Name                                        ID   Mem VCPUs\tState\tTime(s)\nDomain-0                                     0  1024     2\tr-----\t     123.4\nmy vm                                        7   512     1\t-b----\t      10.2\n';
  t.deepEqual(parseXlTable(table), [
    { id: 0, name: 'Domain-0', flags: 'r-----' },
    { id: 7, name: 'my vm', flags: '-b----' },
  ]);
  t.deepEqual(parseXlLong('[{"domid": 7, "config": {"c_info": {"name": "my vm"}}}]'), new Map([[7, 'my vm']]));
  t.is(parseXlLong('(domain (domid 0) (create_info (name Domain-0)))'), undefined);
  t.is(xlObserved('r-----'), 'running');
  t.is(xlObserved('-b----'), 'running');
  t.is(xlObserved('--p---'), 'running', 'paused still holds the VM');
  t.is(xlObserved('---s--'), 'running', 'shutting down is not yet off');
  t.is(xlObserved('----c-'), 'running', 'crashed is not confirmed off');
  t.is(xlObserved('-----d'), 'stopped', 'dying no longer runs');
  t.is(xlObserved('------'), 'running');
  t.is(xlObserved('garbage'), 'unknown');
});

for (const rc of [1, 2] as const) {
  test(`an invalid domain (exit ${rc}, as on ${rc === 1 ? 'current' : 'older'} Xen) is "missing", settled from the list`, async (t) => {
    const { toolstack, fencer } = xl({ rc });
    t.like(await toolstack.state('ghost'), { observed: 'missing' });
    const r = await fencer.do('off', 'ghost');
    t.false(r.ok);
    t.regex(r.message, /not found/);
  });
}

test('off: xl destroy, after which xl forgets the domain: confirmed off', async (t) => {
  const { fake, fencer } = xl();
  fake.setDomain('blue-1', '3 -b----');
  const r = await fencer.do('off', 'blue-1');
  t.true(r.ok, r.message);
  t.is(r.state, 'off');
  t.regex(fake.readFile('calls'), /^destroy blue-1$/m);
});

test('a dying domain counts as off; a paused one is destroyed', async (t) => {
  const { fake, fencer } = xl();
  fake.setDomain('dying', '5 -----d');
  fake.setDomain('paused', '6 --p---');
  const d = await fencer.do('off', 'dying');
  t.like(d, { ok: true, state: 'off' });
  const p = await fencer.do('off', 'paused');
  t.true(p.ok);
  t.regex(fake.readFile('calls'), /^destroy paused$/m);
});

for (const suffix of ['--incoming', '--migratedaway']) {
  test(`a domain seen only as NAME${suffix} is migrating: unknown, and off is not reported`, async (t) => {
    const { fake, toolstack, fencer } = xl();
    fake.setDomain(`blue-2${suffix}`, '9 --p---');
    t.like(await toolstack.state('blue-2'), { observed: 'unknown' });
    const r = await fencer.do('off', 'blue-2');
    t.false(r.ok);
    t.not(r.state, 'off');
  });
}

test('on and reset: xl create with the domain\'s absolute config path (per-domain override or config_dir)', async (t) => {
  const fake = makeDouble('fake-xl');
  const special = join(fake.dir, 'elsewhere.cfg');
  writeFileSync(special, 'name = "blue-2"\n');
  writeFileSync(join(fake.dir, 'blue-1.cfg'), 'name = "blue-1"\n');
  const toolstack = new XlToolstack(30_000, { command: fake.command, configDir: fake.dir, domainConfigs: { 'blue-2': special } });
  const fencer = new Fencer(toolstack, { verifyMs: 1_000, pollMs: 50 });
  fake.setDomain('blue-1', '3 -b----');
  const reset = await fencer.do('reset', 'blue-1');
  t.true(reset.ok, reset.message);
  t.true(reset.started);
  t.regex(fake.readFile('calls'), new RegExp(`^create ${join(fake.dir, 'blue-1.cfg')}$`, 'm'));
  // blue-2 is not running, so xl has no record of it; its config file makes it startable.
  t.is(toolstack.configPath('blue-2'), special);
  const on = await fencer.do('on', 'blue-2');
  t.true(on.ok, on.message);
  t.regex(fake.readFile('calls'), new RegExp(`^create ${special}$`, 'm'));
  // Without a config file it is simply not found.
  const ghost = await fencer.do('on', 'ghost');
  t.false(ghost.ok);
  t.regex(ghost.message, /not found/);
});

test('off of a domain that is not running here is "not found", even with its config file: it may run elsewhere', async (t) => {
  const { fake, fencer } = xl();
  writeFileSync(join(fake.dir, 'blue-3.cfg'), 'name = "blue-3"\n');
  const r = await fencer.do('off', 'blue-3');
  t.false(r.ok);
  t.not(r.state, 'off');
  t.regex(r.message, /not found \(not running on this host/);
});

test('list: names from -l JSON; with SXP output the table names are used', async (t) => {
  for (const long of ['json', 'sxp'] as const) {
    const { fake, toolstack } = xl({ long });
    fake.setDomain('blue-1', '3 -b----');
    fake.setDomain('red-1', '4 -----d');
    const names = (await toolstack.list()).map((d) => `${d.name}:${d.observed}`);
    t.deepEqual(names, ['Domain-0:running', 'blue-1:running', 'red-1:stopped'], long);
  }
});

test('the control domain is never a target', async (t) => {
  const { fake, fencer } = xl();
  const r = await fencer.do('off', 'Domain-0');
  t.false(r.ok);
  t.notRegex(fake.readFile('calls'), /destroy/);
});
