#!/usr/bin/env bash
# Type-checks the shipped web client (web-client/*.js: plain ES modules with
# `// @ts-check` and JSDoc types, served as they are, no build step) with
# TypeScript's checker, pinned in web-client/package.json. Installs it with
# `npm ci` when missing (node_modules is not committed).
#
#   scripts/check-js.sh
set -euo pipefail
cd "$(dirname "$0")/../web-client"

if [[ ! -x node_modules/.bin/tsc ]]; then
  echo "[check-js] npm ci (typescript, pinned in web-client/package.json)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# Every shipped script says so itself (an editor then checks it too, as
# tsconfig.json does here).
missing="$(grep -L '^// @ts-check' -- *.js || true)"
if [[ -n "$missing" ]]; then
  echo "[check-js] without a // @ts-check line: $missing" >&2
  exit 1
fi

node_modules/.bin/tsc -p tsconfig.json
echo "[check-js] web-client: type check passed" >&2
