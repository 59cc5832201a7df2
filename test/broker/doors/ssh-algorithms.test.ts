// What the SSH front door negotiates, seen from outside the real daemon: no
// compression an unauthenticated client can use to inflate packets; the
// pinned algorithm lists, as OpenSSH reads them from the server's KEXINIT, are
// the ones docs/doors/ssh.md documents and each one works; client-supplied names reach
// the audit bounded in size and rate.
import test from 'ava';
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { projectPath } from '../../../common/paths.js';
import { loadOrCreateHostKey, SSH_ALGORITHMS } from '../../../broker/doors/ssh.js';
import { startDaemon, type Daemon } from '../../broker-daemon.js';
import { connectAs } from '../../ssh-client.js';
import { tempDir } from '../../helpers.js';
import { generateEd25519 } from '../../../broker/identity/keygen.js';

let d: Daemon;
test.before(async () => {
  d = await startDaemon({ clusters: { blue: { domains: ['blue-1'], nodes: { 'blue-1': 'blue-1' } } } });
});
test.after.always(async () => d?.stop());

const MiB = 1024 * 1024;

// ssh2's client sends only the messages it knows; a hostile client sends
// anything. Its own packet writer frames (and encrypts) a raw payload.
const require = createRequire(import.meta.url);
const { sendPacket } = require('ssh2/lib/protocol/utils.js') as { sendPacket: (proto: unknown, packet: Buffer) => void };
interface RawProtocol {
  _packetRW: { write: { allocStart: number; alloc(n: number): Buffer; finalize(p: Buffer): Buffer } };
  _authsQueue: string[];
}
function sendRaw(client: ssh2.Client, payload: Buffer): void {
  const proto = (client as unknown as { _protocol: RawProtocol })._protocol;
  const start = proto._packetRW.write.allocStart;
  const packet = proto._packetRW.write.alloc(payload.length);
  payload.copy(packet, start);
  sendPacket(proto, proto._packetRW.write.finalize(packet));
}
const sshString = (s: string | Buffer): Buffer => {
  const b = Buffer.from(s);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
};
const refusals = (kind: string) => d.auditAll().filter((l) => l.event === 'refusal' && l.kind === kind);

// First: the audit writes one line per refusal kind every 10 s, and the other tests refuse too.
test.serial('public key algorithm names a client makes up reach the audit clipped, one line per 10 s however many', async (t) => {
  // ssh2 itself disconnects on an auth method it does not know; the key algorithm name of a publickey request is free text.
  const algos = ['x', 'y', 'z'].map((c) => c.repeat(30_000));
  const unknownKey = Buffer.from(generateEd25519().public.split(' ')[1] as string, 'base64');
  await new Promise<void>((resolve) => {
    const client = new ssh2.Client();
    let sent = 0;
    client.on('error', () => undefined);
    client.on('close', () => resolve());
    client.connect({
      host: '127.0.0.1',
      port: d.port,
      username: 'fence',
      readyTimeout: 60_000,
      hostVerifier: () => true,
      // Called again on each refusal: a "none" first (ssh2 needs a method of its own in flight), then one made-up algorithm per call.
      authHandler: (_left, _partial, next) => {
        if (sent === 0) {
          sent++;
          return next({ type: 'none', username: 'fence' });
        }
        const algo = algos[sent++ - 1];
        if (algo === undefined) {
          client.end(); // not returned: ssh2 would take the client for the next method, and ask again
          return;
        }
        (client as unknown as { _protocol: RawProtocol })._protocol._authsQueue.push('publickey');
        // SSH_MSG_USERAUTH_REQUEST "publickey", no signature (a query), the algorithm name, the key blob.
        sendRaw(client, Buffer.concat([Buffer.from([50]), sshString('fence'), sshString('ssh-connection'), sshString('publickey'), Buffer.from([0]), sshString(algo), sshString(unknownKey)]));
      },
    });
  });
  const lines = refusals('auth_unknown_key');
  t.is(lines.length, 1, JSON.stringify(lines).slice(0, 500));
  t.is(lines[0]?.algo, `${'x'.repeat(64)}… (30000 chars)`);
});

test.serial('global requests of different names make one audit line per 10 s, not one per name', async (t) => {
  // ssh2 answers names it does not know itself; these two reach the broker, which refuses both.
  const client = await connectAs(d, 'blue-1');
  await t.throwsAsync(new Promise((resolve, reject) => client.forwardIn('127.0.0.1', 0, (err) => (err ? reject(err) : resolve(undefined)))));
  await t.throwsAsync(new Promise((resolve, reject) => client.openssh_forwardInStreamLocal('/tmp/fb-nowhere.sock', (err) => (err ? reject(err) : resolve(undefined)))));
  client.end();
  const lines = refusals('channel_refused');
  t.is(lines.length, 1, JSON.stringify(lines));
  t.like(lines[0], { request: 'global', name: 'tcpip-forward', why: 'no global requests' });
});

/**
 * An unauthenticated client that prefers zlib (which, unlike
 * zlib@openssh.com, starts before authentication) and sends `count` password
 * attempts of `password`. 30 MiB of one byte deflates to ~30 KB, under the
 * 35,000-byte packet limit that is checked before inflating.
 */
function compressedPasswords(port: number, password: string, count: number): Promise<{ compression: string; sent: number; answered: number; authenticated: boolean; error?: string }> {
  return new Promise((resolve) => {
    const client = new ssh2.Client();
    let compression = '(none negotiated)';
    let sent = 0;
    let answered = 0;
    let authenticated = false;
    let error: string | undefined;
    client.on('ready', () => {
      authenticated = true;
      client.end();
    });
    client.on('error', (err) => (error ??= err.message));
    client.on('close', () => resolve({ compression, sent, answered, authenticated, ...(error ? { error } : {}) }));
    client.connect({
      host: '127.0.0.1',
      port,
      username: 'fence',
      readyTimeout: 60_000,
      hostVerifier: () => true,
      algorithms: { compress: ['zlib', 'none'] },
      debug: (line) => {
        const m = /Handshake: C->S compression: (\S+)/.exec(line);
        if (m) compression = m[1] as string;
        if (line.includes('Sending USERAUTH_REQUEST (password)')) sent++;
        if (line.includes('USERAUTH_FAILURE')) answered++;
      },
      authHandler: Array.from({ length: count }, () => ({ type: 'password' as const, username: 'fence', password })),
    });
  });
}

test.serial('five zlib-compressed 30 MiB passwords from an unauthenticated client leave the daemon within 64 MB of its RSS', async (t) => {
  const password = 'a'.repeat(30 * MiB);
  d.resetPeakRss();
  const startKiB = d.rssKiB();
  const r = await compressedPasswords(d.port, password, 5);
  const peakKiB = d.peakRssKiB();
  t.log(`daemon RSS ${(startKiB / 1024).toFixed(0)} MB before, peak ${(peakKiB / 1024).toFixed(0)} MB; client: ${JSON.stringify(r)}`);
  t.false(r.authenticated);
  t.true(peakKiB - startKiB <= 64 * 1024, `peak RSS ${peakKiB} KiB is ${((peakKiB - startKiB) / 1024).toFixed(0)} MB above the ${startKiB} KiB it started at`);
  // Still serving.
  const status = await d.ssh('blue-1', 'status blue-1');
  t.is(status.exitCode, 0, status.stderr);
});

/** The server's KEXINIT lists as OpenSSH prints them (`ssh -vvv`: "peer server KEXINIT proposal"), by label. */
function serverProposal(stderr: string): Map<string, string[]> {
  const lines = stderr.split(/\r?\n/); // OpenSSH ends its debug lines with CRLF
  const at = lines.findIndex((l) => l.includes('peer server KEXINIT proposal'));
  const lists = new Map<string, string[]>();
  for (const l of lines.slice(at + 1)) {
    const m = /^debug2: (KEX algorithms|host key algorithms|ciphers ctos|ciphers stoc|MACs ctos|MACs stoc|compression ctos|compression stoc): (.*)$/.exec(l);
    if (!m) break;
    lists.set(m[1] as string, (m[2] as string).split(','));
  }
  return lists;
}

/** The table of offered algorithms in docs/doors/ssh.md ("### Algorithms offered"), by row. */
function readmeAlgorithms(): Map<string, string[]> {
  const readme = readFileSync(projectPath('docs/doors/ssh.md'), 'utf8');
  const section = readme.split('### Algorithms offered')[1]?.split('\n#')[0] ?? '';
  const rows = new Map<string, string[]>();
  for (const m of section.matchAll(/^\| (key exchange|host key|ciphers|MACs|compression)[^|]* \| (.*) \|$/gm)) {
    rows.set(m[1] as string, [...(m[2] as string).matchAll(/`([^`]+)`/g)].map((x) => x[1] as string));
  }
  return rows;
}

test.serial("OpenSSH reads the pinned lists from the server's KEXINIT, and docs/doors/ssh.md's table says the same", async (t) => {
  const r = await d.ssh('blue-1', 'status blue-1', ['-vvv']);
  t.is(r.exitCode, 0, r.stderr.slice(-2000));
  const seen = serverProposal(r.stderr);
  const pinned = {
    'KEX algorithms': [...SSH_ALGORITHMS.kex, 'kex-strict-s-v00@openssh.com'], // ssh2 adds the Terrapin countermeasure
    'host key algorithms': SSH_ALGORITHMS.serverHostKey,
    'ciphers ctos': SSH_ALGORITHMS.cipher,
    'ciphers stoc': SSH_ALGORITHMS.cipher,
    'MACs ctos': SSH_ALGORITHMS.hmac,
    'MACs stoc': SSH_ALGORITHMS.hmac,
    'compression ctos': SSH_ALGORITHMS.compress,
    'compression stoc': SSH_ALGORITHMS.compress,
  };
  t.deepEqual(Object.fromEntries(seen), pinned);
  const readme = readmeAlgorithms();
  t.deepEqual(Object.fromEntries(readme), {
    'key exchange': pinned['KEX algorithms'],
    'host key': pinned['host key algorithms'],
    ciphers: pinned['ciphers ctos'],
    MACs: pinned['MACs ctos'],
    compression: pinned['compression ctos'],
  });
  t.regex(r.stderr, /kex: client->server cipher: \S+ MAC: \S+ compression: none/);
});

test.serial('OpenSSH connects with each offered algorithm alone, and cannot get group exchange, SHA-1 or plain MACs, or another host key type', async (t) => {
  const works = [
    ...SSH_ALGORITHMS.kex.map((a) => ['-o', `KexAlgorithms=${a}`]),
    ...SSH_ALGORITHMS.cipher.map((a) => ['-o', `Ciphers=${a}`]),
    ...SSH_ALGORITHMS.hmac.map((a) => ['-o', 'Ciphers=aes128-ctr', '-o', `MACs=${a}`]),
    ['-o', 'Compression=yes'], // OpenSSH then prefers zlib@openssh.com, and gets none
  ];
  for (const opts of works) {
    const r = await d.ssh('blue-1', 'status blue-1', opts);
    t.is(r.exitCode, 0, `${opts.join(' ')}: ${r.stderr}`);
  }
  const refused: [string[], RegExp][] = [
    [['-o', 'KexAlgorithms=diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256'], /no matching key exchange method/],
    [['-o', 'Ciphers=aes128-ctr', '-o', 'MACs=hmac-sha1,hmac-sha1-etm@openssh.com,hmac-sha2-256,hmac-sha2-512,umac-128-etm@openssh.com'], /no matching MAC/],
    [['-o', 'Ciphers=aes128-cbc,aes256-cbc,3des-cbc'], /no matching cipher/],
    [['-o', 'HostKeyAlgorithms=rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256'], /no matching host key type/],
  ];
  for (const [opts, why] of refused) {
    const r = await d.ssh('blue-1', 'status blue-1', opts);
    t.is(r.exitCode, 255, `${opts.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, why);
  }
});

test('a host key other than ed25519 is refused at start, saying what to do', async (t) => {
  const path = join(tempDir('fb-hostkey-'), 'host_ecdsa');
  await execa('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', path]);
  t.throws(() => loadOrCreateHostKey(path), { message: /is ecdsa-sha2-nistp256; the broker offers ed25519 host keys only/ });
});
