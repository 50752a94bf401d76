#!/usr/bin/env bash
# The HTTP caching conformance suite (http-tests/cache-tests) through both
# binaries, each with the cache on; fails if either scores below the
# minimums recorded in conformance/cache-tests.min.
#
#   conformance/cache-tests.sh [--suite DIR] [--release]
#
# The suite is ../shared/cache-tests beside the repository unless --suite
# or $CACHE_TESTS says otherwise (see its README: it needs node >= 20.18
# and npm, and installs undici on first use). Takes about a minute per
# binary. Prints each binary's score and the required tests it failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
suite=${CACHE_TESTS:-$repo/../shared/cache-tests}
profile=debug
while [ $# -gt 0 ]; do
  case $1 in
    --suite) suite=$2; shift 2 ;;
    --release) profile=release; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$suite/run.sh" ] || { echo "cache-tests suite not found at $suite" >&2; exit 2; }
command -v node >/dev/null || { echo "node is needed (>= 20.18)" >&2; exit 2; }
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=18)?0:1)' \
  || { echo "node $(node --version) is too old: the suite needs >= 20.18" >&2; exit 2; }

read -r min_required min_optional < <(awk '/^required/{r=$2} /^optional/{o=$2} END{print r, o}' "$repo/conformance/cache-tests.min")

flags=()
[ "$profile" = release ] && flags+=(--release)
cargo build -q "${flags[@]}" -p proxy-smol -p proxy-std

work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# Loopback origins, PUT to configure them, and the cache on.
cat >"$work/proxy.ron" <<'RON'
(
    policy: (allow_private_destinations: true),
    logging: (level: Warn),
    cache: (enabled: true),
)
RON

status=0
for bin in proxy-smol proxy-std; do
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$repo/target/$profile/$bin" --config "$work/proxy.ron" --port "$port" --quiet 2>"$work/$bin.stderr" &
  pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  out="$work/$bin"
  # Its exit status is that of stopping its origin server: judge by the
  # score it wrote.
  "$suite/run.sh" --proxy "127.0.0.1:$port" --out "$out" >"$work/$bin.log" 2>&1 || true
  [ -s "$out/score.txt" ] || { tail -20 "$work/$bin.log" >&2; echo "$bin: the suite did not run" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  summary=$(tail -1 "$out/score.txt")
  optimal=$(grep '^optimal:' "$out/score.txt" | sed 's/optimal: //')
  required=${summary%% passed*}
  echo "$bin: required $summary; optional $optimal (minimums: $min_required required, $min_optional optional)"
  SHOW_FAILED=1 node "$suite/score.mjs" "$out/results.json" | grep '^FAIL' | sed 's/^/  /' || true
  if [ "$required" -lt "$min_required" ] || [ "${optimal%%/*}" -lt "$min_optional" ]; then
    echo "$bin: below the recorded minimum" >&2
    status=1
  fi
done
exit $status
