# syntax=docker/dockerfile:1
# One image for every BitBrat service: `bitbrat service <name>` runs one service (compose, Cloud Run),
# the default `bitbrat start` runs them all in one process. The sources are compiled into dist/ (the same
# transform tsx applies), so a container starts without transpiling; bin/bitbrat.js runs dist/ while it
# matches src/ and falls back to the sources through tsx otherwise.

# --- build: install every dependency from the lock file, then drop the dev ones -------------------
FROM node:24-slim AS build
WORKDIR /app
ENV NODE_ENV=development
COPY package.json package-lock.json ./
# npm ci runs the prepare script (scripts/build.mjs), which finds no src/ yet and compiles nothing.
COPY bin ./bin
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund
COPY tsconfig.json architecture.yaml ./
COPY src ./src
COPY config ./config
COPY schemas ./schemas
# Fail the image build on type errors, compile, then keep only what runs in production.
RUN npx tsc --noEmit -p tsconfig.json \
 && node scripts/build.mjs \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime: production dependencies and the sources only, as the unprivileged `node` user ---------
FROM node:24-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/app/data
WORKDIR /app
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --chown=node:node package.json package-lock.json architecture.yaml ./
COPY --chown=node:node bin ./bin
COPY --from=build --chown=node:node /app/src ./src
COPY --from=build --chown=node:node /app/dist ./dist
COPY --chown=node:node config ./config
COPY --chown=node:node schemas ./schemas
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:${PORT:-8080}/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "--max-semi-space-size=32", "--liftoff-only", "bin/bitbrat.js"]
CMD ["start"]
