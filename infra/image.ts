/**
 * What the stack relies on in the Docker image (Dockerfile): the stage ECS runs, its working
 * directory, the command that starts each service, the user it runs as, and where the CA
 * bundles are. infra/dockerfile.test.ts holds the Dockerfile to these.
 */
import { type ServiceName, serviceBundle } from '../service/bundle.ts';

export const IMAGE = {
  /** The Dockerfile stage the tasks run: the bundled services on Node 22, non-root, no node_modules. */
  target: 'runtime',
  workdir: '/app',
  /** service/bundle.ts writes these files; the runtime stage copies them into the working directory. */
  command: (service: ServiceName) => ['node', serviceBundle(service)],
  /** The base image's unprivileged `node` user, by uid: the task definition declares it. */
  user: '1000',
  /** infra/certs/ in the image. */
  certsDir: '/app/certs/',
} as const;

/**
 * NODE_OPTIONS for a task of `memoryMiB`: the JS heap's ceiling at half the task's memory, the
 * other half left for what lives outside it (request buffers, code, the allocator). Without it
 * Node sizes the heap from whatever memory it detects (4 GiB on a large host), and V8 paces its
 * collections by that: capture's PutRecords request buffers, garbage within milliseconds, then
 * piled up to 250-280 MB of RSS around a live heap under 30 MB (docs/performance.md).
 */
export function nodeOptions(memoryMiB: number): string {
  return `--enable-source-maps --max-old-space-size=${Math.floor(memoryMiB / 2)}`;
}
