// The multicast transport's pure part: which address a packet names for its
// callback, and whether that is the datagram's source. The transport itself
// runs against Debian's fence_xvm in test/cluster/fence-xvm.test.ts.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { callbackProblem, packetAddress } from '../../../../broker/doors/fence-virt/multicast.js';
import { FAMILY, decodeRequest, encodeRequest, HASH, OP } from '../../../../broker/doors/fence-virt/wire.js';

const request = (address: Buffer, family: number) =>
  decodeRequest(encodeRequest({ op: OP.off, hashtype: HASH.sha256, flags: 0, domain: 'vm1', address, port: 1229, family, seqno: 7, random: randomBytes(6) }, randomBytes(64)));

const v6 = (text: string): Buffer => {
  // fe80::1 → 16 bytes, as inet_pton writes them.
  const [head = '', tail = ''] = text.split('::');
  const groups = [...head.split(':').filter(Boolean), ...Array(8 - head.split(':').filter(Boolean).length - tail.split(':').filter(Boolean).length).fill('0'), ...tail.split(':').filter(Boolean)];
  return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
};

test('the packet\'s callback address as text: IPv4 dotted, IPv6 in its canonical form', (t) => {
  t.deepEqual(packetAddress(request(Buffer.from([10, 213, 5, 11]), FAMILY.ipv4)), { family: 'IPv4', address: '10.213.5.11' });
  t.deepEqual(packetAddress(request(v6('fd00:213:0:0:0:0:0:12'), FAMILY.ipv6)), { family: 'IPv6', address: 'fd00:213::12' });
  t.regex(String(packetAddress(request(Buffer.from([10, 0, 0]), FAMILY.ipv4))), /family 2 with a 3-byte address/);
  t.regex(String(packetAddress(request(Buffer.from([10, 0, 0, 1]), 99))), /family 99/);
});

test('a callback goes only to the sender: same address and family pass, anything else is named', (t) => {
  const r4 = request(Buffer.from([10, 213, 5, 11]), FAMILY.ipv4);
  t.is(callbackProblem(r4, { address: '10.213.5.11', port: 40000, family: 'IPv4' }), undefined);
  t.regex(String(callbackProblem(r4, { address: '10.213.5.99', port: 40000, family: 'IPv4' })), /asks for a callback to 10\.213\.5\.11, but came from 10\.213\.5\.99/);
  const r6 = request(v6('fd00:213::12'), FAMILY.ipv6);
  // The source as the kernel reports it may be written differently: compared canonically.
  t.is(callbackProblem(r6, { address: 'fd00:0213:0000::0012', port: 40000, family: 'IPv6' }), undefined);
  t.regex(String(callbackProblem(r6, { address: '10.213.5.11', port: 40000, family: 'IPv4' })), /callback to fd00:213::12, but came from 10\.213\.5\.11/);
  t.regex(String(callbackProblem(request(Buffer.alloc(0), FAMILY.ipv4), { address: '10.213.5.11', port: 1, family: 'IPv4' })), /no usable callback address/);
});
