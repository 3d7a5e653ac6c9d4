/**
 * The production bundle of the capture service: esbuild, as the Lambdas are bundled (CommonJS
 * for Node 22, source map, pg's optional native binding left out), into one file that needs no
 * node_modules. The Dockerfile's build stage runs this (`npm run build:service`); the tests
 * build the same way and read the metafile to hold the import graph to what the service runs.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export const SERVICE_ENTRY = 'service/capture.ts';
/** Where the build stage writes the bundle, relative to the repository root. */
export const SERVICE_OUT_DIR = 'dist/service';
export const SERVICE_BUNDLE = 'capture.cjs';

export async function buildService(outDir = join(ROOT, SERVICE_OUT_DIR)): Promise<Metafile> {
  const result = await build({
    entryPoints: [join(ROOT, SERVICE_ENTRY)],
    outfile: join(outDir, SERVICE_BUNDLE),
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    sourcemap: true,
    external: ['pg-native'],
    metafile: true,
    logLevel: 'warning',
  });
  return result.metafile;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const meta = await buildService();
  const [out, info] = Object.entries(meta.outputs).find(([name]) => name.endsWith(SERVICE_BUNDLE))!;
  console.log(`${out}: ${(info.bytes / 1024).toFixed(0)} KiB from ${Object.keys(meta.inputs).length} modules`);
}
