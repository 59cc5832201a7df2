// Where the project's own files are, from the compiled module's location
// (dist/common/paths.js → project root two levels up).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const projectPath = (...parts: string[]): string => resolve(PROJECT_ROOT, ...parts);
