# One image for the three ekv services; the command selects which runs:
#
#   docker run ... ekv/ekv:dev consensus | keystore | admin | ekv <cli args>
#
# Build arguments and targets (docs/compose.md):
#   BASE_IMAGE  a Node 24 image (default the official node:24-bookworm-slim;
#               on machines without a registry the local ekv/node-base:24)
#   --target npm      (default, last stage) production dependencies from
#                     `npm ci --omit=dev` in a build stage: needs npm and a shell
#                     in BASE_IMAGE, and BuildKit (the legacy builder also builds
#                     the context stages)
#   --target context  the build context's node_modules, pruned to the services'
#                     production closure: for base images without npm (ekv/node-base)
#
# The services run from their TypeScript sources (Node 24 type stripping), as
# the fixed non-root user 10001:10001, with their data under the /data volume.
ARG BASE_IMAGE=node:24-bookworm-slim

# --- base: user ekv (10001), /data, entry point, healthcheck -----------------
FROM ${BASE_IMAGE} AS base
USER 0
WORKDIR /app
COPY docker/prepare-image.ts /app/docker/prepare-image.ts
# Exec form: the local base image has no shell.
RUN ["node", "/app/docker/prepare-image.ts"]
ENV NODE_ENV=production \
    HOME=/home/ekv \
    EKV_DATA_DIR=/data \
    EKV_METRICS_PORT=9464 \
    NATS_URL=nats://nats:4222
VOLUME ["/data"]
EXPOSE 9464
# Healthy while the process serves its metrics (and, for consensus, apply is
# not halted); docker/healthcheck/check.ts finds the service from PID 1.
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
  CMD ["node", "/app/docker/healthcheck/check.ts"]
ENTRYPOINT ["node", "/app/docker/run.ts"]
CMD ["admin"]

# --- sources (no tests, no tools; see .dockerignore) -------------------------
FROM base AS sources
COPY package.json package-lock.json /app/
COPY test/package.json /app/test/package.json
COPY libs /app/libs
COPY services /app/services
COPY docker /app/docker

# --- dependencies from the build context (no npm needed) ---------------------
# Only the package manifests reach the pruning stage, so a change to the
# sources leaves its (large) layers cached.
FROM sources AS manifests
RUN ["node", "/app/docker/prune-deps.ts", "--manifests-only", "/app"]

FROM base AS context-deps
COPY --from=manifests /app /app
COPY node_modules /app/node_modules
RUN ["node", "/app/docker/prune-deps.ts", "/app"]

FROM base AS context
COPY --from=context-deps /app/node_modules /app/node_modules
COPY --from=sources /app /app
USER 10001:10001

# --- dependencies from the registry (official images; needs npm) ------------
FROM sources AS npm-deps
# Shell form: this stage runs only on base images with npm (and a shell). npm
# 11's `ci` rejects this lock (it lists only Linux's optional @biomejs/cli-*
# packages, the npm/cli#4828 family); `install` accepts it unchanged
# (docs/development.md). prune-deps.ts then keeps the services' closure.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 || npm install --omit=dev --ignore-scripts --no-audit --no-fund
RUN ["node", "/app/docker/prune-deps.ts", "/app"]

FROM base AS npm
COPY --from=npm-deps /app/node_modules /app/node_modules
COPY --from=sources /app /app
USER 10001:10001
