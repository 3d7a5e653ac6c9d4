/**
 * What the stack relies on in the Docker image (Dockerfile): the stage ECS runs, its working
 * directory, the command that starts the capture service and where the CA bundles are.
 * infra/dockerfile.test.ts holds the Dockerfile to these.
 */
export const IMAGE = {
  /** The Dockerfile stage the task runs: the bundled service on Node 22, non-root, no node_modules. */
  target: 'runtime',
  workdir: '/app',
  /** service/bundle.ts writes this file; the runtime stage copies it into the working directory. */
  command: ['node', 'capture.cjs'],
  /** infra/certs/ in the image. */
  certsDir: '/app/certs/',
} as const;
