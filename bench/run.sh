#!/usr/bin/env bash
# One-command benchmark: bench/run.sh [run.py options], e.g.
#   bench/run.sh                  # direct, passthrough, taskgate; 10 s points
#   bench/run.sh --smoke          # CI: 1 s points, c=1 and 16
#   bench/run.sh --delay-ms 50    # 50 ms upstream, c=1 and 64
#   bench/run.sh --systems direct,passthrough,taskgate,litellm,portkey   # after bench/setup_peers.sh
#   bench/run.sh --baseline HEAD~1  # before/after in one run: adds taskgate@<sha>, the code of
#                                   # HEAD~1 from a git worktree in /tmp/taskgate-bench-baseline-<sha>
#   bench/run.sh --store shared     # Taskgate on a shared redis-server (appendfsync everysec) on another core
#   bench/run.sh --workers 2        # two gateway workers
# Uses $VENV (default /work/venv, else .venv, else the python3 on PATH);
# installs wrk (Debian package, root only) and psutil when missing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${VENV:-}"
if [ -z "$VENV" ]; then
  for v in /work/venv "$ROOT/.venv"; do
    if [ -x "$v/bin/python" ]; then VENV="$v"; break; fi
  done
fi
if [ -n "$VENV" ]; then
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
PY="$(command -v python || command -v python3)"

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing wrk" >&2
    (apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }) >&2
  else
    echo "bench: wrk not found; install it (apt-get install -y wrk)" >&2
    exit 2
  fi
fi
if ! "$PY" -c "import psutil" 2>/dev/null; then
  echo "bench: installing psutil (bench-only dependency)" >&2
  "$PY" -m pip install -q --disable-pip-version-check psutil >&2 || echo "bench: psutil unavailable, using /proc" >&2
fi
for m in aiohttp uvicorn httptools uvloop orjson; do
  "$PY" -c "import $m" 2>/dev/null || { echo "bench: python module '$m' missing in $PY's environment (pip install 'uvicorn[standard]' aiohttp orjson)" >&2; exit 2; }
done
cd "$ROOT"
exec "$PY" "$HERE/run.py" "$@"
