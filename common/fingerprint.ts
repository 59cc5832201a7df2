// OpenSSH-style SHA256 fingerprints of SSH public key blobs, as `ssh-keygen -lf`
// prints them: identity in the broker's audit log, host-key pinning in the plugin.
import { createHash } from 'node:crypto';

export function fingerprintOf(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

export const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;
