/**
 * The production bundles of the long-running services, capture and the loader: esbuild, as the
 * Lambdas are bundled (CommonJS for Node 22, source maps, optional modules never used left
 * out), one file each that needs no node_modules. The Dockerfile's build stage runs this
 * (`npm run build:service`); the tests build the same way and read the metafile to hold each
 * import graph to what its service runs.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Each service's entry, relative to the repository root; its bundle is `<name>.cjs`. */
export const SERVICE_ENTRIES = { capture: 'service/capture.ts', loader: 'service/loader.ts' } as const;
export type ServiceName = keyof typeof SERVICE_ENTRIES;
/** Where the build stage writes the bundles, relative to the repository root. */
export const SERVICE_OUT_DIR = 'dist/service';
export const serviceBundle = (name: ServiceName) => `${name}.cjs`;

export async function buildService(outDir = join(ROOT, SERVICE_OUT_DIR)): Promise<Metafile> {
  const result = await build({
    entryPoints: Object.fromEntries(Object.entries(SERVICE_ENTRIES).map(([name, entry]) => [name, join(ROOT, entry)])),
    outdir: outDir,
    outExtension: { '.js': '.cjs' },
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    sourcemap: true,
    // pg's optional native binding and the protobufjs of pg-logical-replication's decoderbufs
    // plugin are never used (each is required lazily, in a try); neither is a production package.
    external: ['pg-native', 'protobufjs'],
    metafile: true,
    logLevel: 'warning',
  });
  return result.metafile;
}

/** The inputs of one service's bundle, from the metafile of buildService. */
export function bundleInputs(meta: Metafile, name: ServiceName): string[] {
  const [, output] = Object.entries(meta.outputs).find(([file]) => file.endsWith(`/${serviceBundle(name)}`))!;
  return Object.keys(output.inputs).map((p) => p.replaceAll('\\', '/'));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const meta = await buildService();
  for (const name of Object.keys(SERVICE_ENTRIES) as ServiceName[]) {
    const [out, info] = Object.entries(meta.outputs).find(([file]) => file.endsWith(`/${serviceBundle(name)}`))!;
    console.log(`${out}: ${(info.bytes / 1024).toFixed(0)} KiB from ${bundleInputs(meta, name).length} modules`);
  }
}
