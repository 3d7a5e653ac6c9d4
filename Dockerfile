# One image for every totes-cdc service: the capture task in ECS (`node bin/totes.mjs run capture`)
# and, in docker-compose.yml, the other services and the Kinesis and S3 emulators.
# The lockfile pins linux-x64 binaries (embedded-postgres): build for linux/amd64.
FROM node:20-bookworm-slim

WORKDIR /app
ENV AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true \
    npm_config_update_notifier=false

# Dependencies first, so a source change does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && npm cache clean --force

COPY . .
# s3rver's data directory in compose (owned by the unprivileged user the services run as).
RUN mkdir /data && chown node:node /data

USER node
# The capture service's health endpoint (TOTES_HEALTH_PORT).
EXPOSE 8080
CMD ["node", "bin/totes.mjs", "--help"]
