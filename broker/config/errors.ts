// A configuration problem with its place: FILE:LINE:COL: message (1-based),
// the form editors and `fencectl check` users can jump to.
export interface Located {
  file: string;
  line: number;
  col: number;
  message: string;
}

export const formatLocated = (e: Located): string => `${e.file}:${e.line}:${e.col}: ${e.message}`;

export class ConfigError extends Error {
  constructor(
    readonly problems: Located[],
    options?: { cause?: unknown },
  ) {
    super(problems.map(formatLocated).join('\n'), options);
    this.name = 'ConfigError';
  }
}
