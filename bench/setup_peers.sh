#!/usr/bin/env bash
# Install the peer gateways the benchmark compares Taskgate against, into the
# git-ignored bench/.peers/. Idempotent: a peer already installed at the pinned
# version is left alone.
#
#   bench/setup_peers.sh            # both
#   bench/setup_peers.sh litellm    # LiteLLM Proxy only
#   bench/setup_peers.sh portkey    # Portkey gateway only
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$HERE/.peers"
LITELLM_VERSION="1.106.2"          # same exact pin as pyproject.toml (never 1.82.7/1.82.8)
PORTKEY_VERSION="1.15.2"
# @hono/node-server >= 1.14 keeps fetch()'s immutable Headers when Portkey
# re-wraps an upstream SSE response (new Response(body, upstreamResponse)), so
# every streamed request fails with "TypeError: immutable" on Node 20. 1.13.x
# copies the headers: pin it.
HONO_NODE_SERVER_VERSION="1.13.8"
PYTHON="${PYTHON:-python3}"
WHAT="${1:-all}"
mkdir -p "$PEERS"

install_litellm() {
  local venv="$PEERS/litellm-venv"
  if [ -x "$venv/bin/litellm" ] && "$venv/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if m.version("litellm") == "$LITELLM_VERSION" else 1)
PY
  then
    echo "litellm $LITELLM_VERSION: already installed in $venv"
    return 0
  fi
  echo "litellm $LITELLM_VERSION: installing litellm[proxy] into $venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$venv/bin/pip" install -q --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
  "$venv/bin/litellm" --version >/dev/null 2>&1 || true
  echo "litellm: ok ($venv/bin/litellm)"
}

install_portkey() {
  local dir="$PEERS/portkey"
  local entry="$dir/node_modules/@portkey-ai/gateway/build/start-server.js"
  if [ -f "$entry" ] \
     && [ "$(node -p "require('$dir/node_modules/@portkey-ai/gateway/package.json').version" 2>/dev/null)" = "$PORTKEY_VERSION" ] \
     && grep -q "\"version\": \"$HONO_NODE_SERVER_VERSION\"" "$dir/node_modules/@hono/node-server/package.json" 2>/dev/null; then
    echo "portkey $PORTKEY_VERSION: already installed in $dir"
    return 0
  fi
  command -v npm >/dev/null || { echo "portkey: npm not found" >&2; return 1; }
  echo "portkey $PORTKEY_VERSION: installing @portkey-ai/gateway into $dir"
  mkdir -p "$dir"
  cat > "$dir/package.json" <<JSON
{
  "name": "taskgate-bench-portkey",
  "private": true,
  "dependencies": { "@portkey-ai/gateway": "$PORTKEY_VERSION" },
  "overrides": { "@hono/node-server": "$HONO_NODE_SERVER_VERSION" }
}
JSON
  # its postinstall (patch-package) is not needed to run the built server
  (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error)
  [ -f "$entry" ] || { echo "portkey: $entry missing after install" >&2; return 1; }
  echo "portkey: ok ($entry)"
}

rc=0
case "$WHAT" in
  all) install_litellm || rc=1; install_portkey || rc=1 ;;
  litellm) install_litellm || rc=1 ;;
  portkey) install_portkey || rc=1 ;;
  *) echo "usage: $0 [all|litellm|portkey]" >&2; exit 2 ;;
esac
exit $rc
