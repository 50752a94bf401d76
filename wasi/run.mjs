// Runs a wasm32-wasip1 program (a test binary) under Node's WASI, as
// cargo's runner for that target (see .cargo/config.toml):
//   node wasi/run.mjs PROGRAM.wasm [ARGS...]
// The workspace is preopened at its own path, so a test reads
// testdata/ (the golden traces) by the same absolute path as natively.
// The exit code is the program's; a trap (a panic aborts on this target)
// is reported with the test that was running when it happened.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, env, exit, stderr } from 'node:process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [program, ...args] = argv.slice(2);
if (!program) {
  stderr.write('usage: node wasi/run.mjs PROGRAM.wasm [ARGS...]\n');
  exit(2);
}
const wasi = new WASI({
  version: 'preview1',
  args: [program, ...args],
  env,
  preopens: { [root]: root },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(program));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
try {
  exit(wasi.start(instance));
} catch (e) {
  stderr.write(`\nwasi/run.mjs: ${program} trapped (${e.message}); the test named last above failed\n`);
  exit(101);
}
