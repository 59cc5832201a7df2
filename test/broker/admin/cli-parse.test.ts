// The option tables' two additions for issue 20, on their own: an option whose
// value may be left out (OptionSpec.bare, pacemaker's --serial [DEVICE]) and
// positional operands (CommandSpec.operands, channel's NODE); how --help and
// the synopsis show them.
import test from 'ava';
import { commandHelp, parseCommandLine, synopsisOf, UsageError, type CommandSpec } from '../../../broker/admin/cli.js';

const withBare: CommandSpec = {
  name: 'p',
  summary: 'A command with an optional value',
  description: [],
  options: [
    { name: 'serial', type: 'string', value: 'DEVICE', bare: '/dev/ttyS1', help: 'The device' },
    { name: 'format', type: 'string', value: 'F', default: 'cib', help: 'The format' },
  ],
  exit: ['0 ok'],
};

const withOperand: CommandSpec = {
  name: 'c',
  summary: 'A command with an operand',
  description: [],
  options: [{ name: 'serial', type: 'string', value: 'DEVICE', bare: '/dev/ttyS1', help: 'The device' }, { name: 'xml', type: 'boolean', help: 'XML only' }],
  operands: [{ value: 'NODE', help: 'The node' }],
  exit: ['0 ok'],
};

test('a value that may be left out: alone at the end, before another option, given, or with =', (t) => {
  const v = (args: string[]) => parseCommandLine(withBare, args).values;
  t.is(v([]).serial, undefined, 'not given: no value at all (no default)');
  t.is(v(['--serial']).serial, '/dev/ttyS1');
  t.deepEqual([v(['--serial', '--format', 'pcs']).serial, v(['--serial', '--format', 'pcs']).format], ['/dev/ttyS1', 'pcs']);
  t.is(v(['--serial', '/dev/ttyS2']).serial, '/dev/ttyS2');
  t.is(v(['--serial=/dev/hvc1']).serial, '/dev/hvc1');
  // After --, nothing is an option: parseArgs refuses the positional as ever.
  t.throws(() => v(['--', '--serial']), { instanceOf: UsageError });
});

test('operands: exactly as many as the table names; a value that may be left out takes one only with =', (t) => {
  t.deepEqual(parseCommandLine(withOperand, ['n1']).operands, ['n1']);
  t.deepEqual(parseCommandLine(withOperand, ['--xml', 'n1']).operands, ['n1']);
  t.deepEqual(parseCommandLine(withOperand, ['n1', '--xml']).operands, ['n1'], 'options after the operand too');
  const bare = parseCommandLine(withOperand, ['--serial', 'n1']);
  t.deepEqual([bare.values.serial, bare.operands], ['/dev/ttyS1', ['n1']], 'never swallows the operand');
  t.is(parseCommandLine(withOperand, ['--serial=/dev/ttyS3', 'n1']).values.serial, '/dev/ttyS3');
  t.throws(() => parseCommandLine(withOperand, []), { instanceOf: UsageError, message: 'NODE is required' });
  t.throws(() => parseCommandLine(withOperand, ['a', 'b']), { instanceOf: UsageError, message: 'unexpected argument "b"' });
  t.deepEqual(parseCommandLine(withOperand, ['--help']).operands, [], '--help needs no operand');
  // A command without operands still refuses a positional, naming it.
  t.throws(() => parseCommandLine(withBare, ['stray']), { instanceOf: UsageError, message: /stray/ });
});

test('help and synopsis show [DEVICE] and the operand', (t) => {
  t.deepEqual(synopsisOf(withOperand), ['[--serial [DEVICE]] [--xml] NODE']);
  const help = commandHelp('fencectl', withOperand);
  t.regex(help, /^usage: fencectl c \[--serial \[DEVICE\]\] \[--xml\] NODE$/m);
  t.regex(help, /^operands:\n {2}NODE {2}The node$/m);
  t.regex(help, /^ {2}--serial \[DEVICE\] +The device \(DEVICE left out: \/dev\/ttyS1\)$/m);
  t.notRegex(commandHelp('fencectl', withBare), /operands:/, 'no operands block without operands');
});
