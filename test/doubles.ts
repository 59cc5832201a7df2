// Sets up the toolstack TEST DOUBLES (test/doubles/fake-virsh, fake-xl) in a
// per-test folder with their state files.
import { copyFileSync, mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectPath } from '../common/paths.js';
import { tempDir } from './helpers.js';

export interface Double {
  dir: string;
  command: string;
  setDomain(name: string, content: string): void;
  setFile(name: string, content: string): void;
  readFile(name: string): string;
}

export function makeDouble(which: 'fake-virsh' | 'fake-xl'): Double {
  const dir = tempDir(`fb-${which}-`);
  const command = join(dir, which);
  copyFileSync(projectPath('test', 'doubles', which), command);
  mkdirSync(join(dir, 'domains'));
  return {
    dir,
    command,
    setDomain: (name, content) => writeFileSync(join(dir, 'domains', name), content + '\n'),
    setFile: (name, content) => writeFileSync(join(dir, name), content + '\n'),
    readFile: (name) => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8') : ''),
  };
}
