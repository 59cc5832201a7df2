// Tests that restart a system service every other test uses (libvirtd): npm
// test runs them alone, after the main suite (package.json's ava config
// leaves this folder out).
export default {
  files: ['dist/test/exclusive/**/*.test.js'],
  timeout: '10m',
  workerThreads: false,
};
