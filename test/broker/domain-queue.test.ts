// The per-domain order of toolstack work, called directly (no toolstack, no
// clock): shared reads, power never behind reads, bounds, and requests that
// give up never reaching the work.
import test from 'ava';
import { Busy, DomainQueue, Dropped } from '../../broker/domain-queue.js';

/** A promise the test settles. */
function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Lets every pending promise callback run. */
const drain = () => new Promise<void>((r) => setImmediate(r));

test('reads of one domain in flight at the same time share one toolstack read', async (t) => {
  const q = new DomainQueue({ maxReads: 200, maxPower: 8 });
  let calls = 0;
  const gate = deferred<string>();
  const read = () => {
    calls++;
    return gate.promise;
  };
  const readers = Array.from({ length: 150 }, () => q.read('vm1', read));
  await drain();
  gate.resolve('running');
  t.deepEqual(new Set(await Promise.all(readers)), new Set(['running']));
  t.is(calls, 1);
  t.is(q.activeDomains, 0, 'nothing kept once idle');
});

test('a power action waits only for the one read running; reads arriving during it wait for it', async (t) => {
  const q = new DomainQueue({ maxReads: 600, maxPower: 8 });
  const order: string[] = [];
  const first = deferred<string>();
  const powerHold = deferred();
  let reads = 0;
  const read = () => {
    reads++;
    order.push(`read ${reads}`);
    return reads === 1 ? first.promise : Promise.resolve('after');
  };
  const early = Array.from({ length: 300 }, () => q.read('vm1', read));
  await drain();
  let powerRunning = false;
  const power = q.power('vm1', async () => {
    order.push('power');
    powerRunning = true;
    await powerHold.promise;
    return 'off';
  });
  await drain();
  t.deepEqual(order, ['read 1'], 'the power action waits for the read already running');
  first.resolve('before');
  t.deepEqual(await Promise.all(early), early.map(() => 'before'));
  await drain();
  t.true(powerRunning);
  const late = Array.from({ length: 300 }, () => q.read('vm1', read));
  await drain();
  t.deepEqual(order, ['read 1', 'power'], 'no read starts while the power action runs');
  powerHold.resolve();
  t.is(await power, 'off');
  t.deepEqual(await Promise.all(late), late.map(() => 'after'));
  t.deepEqual(order, ['read 1', 'power', 'read 2'], '600 reads cost two toolstack reads');
  t.is(q.activeDomains, 0);
});

test('power actions on one domain run one at a time in arrival order; other domains do not wait', async (t) => {
  const q = new DomainQueue({ maxReads: 10, maxPower: 8 });
  const log: string[] = [];
  const hold = deferred();
  const a = q.power('vm1', async () => {
    log.push('a start');
    await hold.promise;
    log.push('a end');
  });
  const b = q.power('vm1', async () => {
    log.push('b');
  });
  const other = q.power('vm2', async () => {
    log.push('vm2');
  });
  await other;
  t.deepEqual(log, ['a start', 'vm2']);
  hold.resolve();
  await Promise.all([a, b]);
  t.deepEqual(log, ['a start', 'vm2', 'a end', 'b']);
});

test('bounds: reads and power actions are counted apart, so reads cannot crowd out a fence', async (t) => {
  const q = new DomainQueue({ maxReads: 3, maxPower: 2 });
  const hold = deferred<string>();
  const reads = Array.from({ length: 3 }, () => q.read('vm1', () => hold.promise));
  await t.throwsAsync(q.read('vm1', () => hold.promise), { instanceOf: Busy, message: /max_reads_per_domain 3/ });
  const p1 = q.power('vm1', async () => 'p1');
  const p2 = q.power('vm1', async () => 'p2');
  await t.throwsAsync(q.power('vm1', async () => 'p3'), { instanceOf: Busy, message: /max_power_per_domain 2/ });
  hold.resolve('x');
  await Promise.all(reads);
  t.deepEqual(await Promise.all([p1, p2]), ['p1', 'p2']);
  t.is(q.activeDomains, 0);
});

test('a request that gives up while queued never runs its work; the ones behind it still run', async (t) => {
  const q = new DomainQueue({ maxReads: 10, maxPower: 8 });
  const hold = deferred();
  let ranGivenUp = false;
  const first = q.power('vm1', () => hold.promise);
  const leaver = new AbortController();
  const givenUp = q.power(
    'vm1',
    async () => {
      ranGivenUp = true;
    },
    leaver.signal,
  );
  const after = q.power('vm1', async () => 'after');
  const readLeaver = new AbortController();
  const read = q.read('vm1', async () => 'state', readLeaver.signal);
  leaver.abort(new Error('requester disconnected'));
  readLeaver.abort(new Error('request deadline passed'));
  await t.throwsAsync(givenUp, { instanceOf: Dropped, message: 'requester disconnected' });
  await t.throwsAsync(read, { instanceOf: Dropped, message: 'request deadline passed' });
  hold.resolve();
  await first;
  t.is(await after, 'after');
  t.false(ranGivenUp);
  t.is(q.activeDomains, 0);
});

test('an already-aborted request is dropped at once', async (t) => {
  const q = new DomainQueue({ maxReads: 10, maxPower: 8 });
  const ac = new AbortController();
  ac.abort(new Error('gone'));
  let ran = false;
  await t.throwsAsync(
    q.power(
      'vm1',
      async () => {
        ran = true;
      },
      ac.signal,
    ),
    { instanceOf: Dropped },
  );
  t.false(ran);
});
