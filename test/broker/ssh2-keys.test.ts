// patches/ssh2+1.17.0.patch keeps each key's decoded KeyObject (the host key
// signs every handshake). It is kept in a WeakMap by key object, never as a
// property: a property lookup also reads the prototype chain, so a KeyObject
// found there would sign for a key that has none of its own yet.
import test from 'ava';
import ssh2 from 'ssh2';
import { generateEd25519 } from '../../broker/identity/keygen.js';

const parse = (pem: string): ssh2.ParsedKey => {
  const k = ssh2.utils.parseKey(pem);
  if (k instanceof Error || Array.isArray(k)) throw new Error('test key does not parse', { cause: k });
  return k;
};

test('a key signs with its own key, whatever the prototype chain holds', (t) => {
  const a = parse(generateEd25519('a').private);
  const b = parse(generateEd25519('b').private);
  const data = Buffer.from('session');
  t.true(a.verify(data, a.sign(data)));
  // Whatever a now holds that b does not, planted where b's property lookups end.
  const own = new Set(Object.getOwnPropertySymbols(b));
  const planted = Object.getOwnPropertySymbols(a).filter((s) => !own.has(s));
  const proto = Object.prototype as Record<symbol, unknown>;
  for (const s of planted) proto[s] = (a as unknown as Record<symbol, unknown>)[s];
  try {
    const sig = b.sign(data);
    t.true(b.verify(data, sig), `b's signature does not verify with b's key (planted: ${planted.map(String).join(', ') || 'nothing'})`);
    t.false(a.verify(data, sig));
  } finally {
    for (const s of planted) delete proto[s];
  }
});
