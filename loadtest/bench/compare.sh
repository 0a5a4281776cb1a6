#!/usr/bin/env bash
# Requests/s per CPU core of loadtest, wrk and Locust against the same trivial
# loopback endpoint (okserver answers 200 "ok"), each run for DURATION with CONNS
# concurrent connections/users. Per core = req/s ÷ (CPU seconds the generator used ÷
# wall seconds), CPU measured with /usr/bin/time (user + system, children included).
#
#   loadtest/bench/compare.sh                   # defaults: DURATION=20 CONNS=50
#   DURATION=30 CONNS=100 loadtest/bench/compare.sh
#
# Needs: go, /usr/bin/time, wrk (apt-get install wrk), python3-locust (apt-get install
# python3-locust). A missing tool's row says so. Run on a quiet machine: the server
# shares the CPUs with the generator.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-20}
CONNS=${CONNS:-50}
PORT=${PORT:-18080}
URL="http://127.0.0.1:$PORT"
PY=${PYTHON:-/usr/bin/python3}
WORK=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

go build -trimpath -o "$WORK/" ./loadtest/cmd/loadtest ./loadtest/bench/okserver
"$WORK/okserver" -addr "127.0.0.1:$PORT" &
SERVER_PID=$!
for _ in $(seq 50); do curl -fsS "$URL/" >/dev/null 2>&1 && break; sleep 0.1; done
kill -0 "$SERVER_PID" 2>/dev/null || { echo "okserver did not start (port $PORT busy? set PORT=...)" >&2; exit 1; }

# measure NAME: runs the rest of the line under /usr/bin/time, prints "wall user sys".
measure() {
	local name=$1; shift
	/usr/bin/time -o "$WORK/$name.time" -f "%e %U %S" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || true
	cat "$WORK/$name.time" | tail -1
}

row() { # name reqs wall user sys
	awk -v n="$1" -v r="$2" -v w="$3" -v u="$4" -v s="$5" 'BEGIN {
		rps = r / w; cores = (u + s) / w; pc = (cores > 0) ? rps / cores : 0
		printf "%-10s %12.0f %10.2f %14.0f\n", n, rps, cores, pc }'
}

printf "%-10s %12s %10s %14s\n" tool "req/s" "cores" "req/s per core"

# loadtest: closed loop, CONNS users, GET /metrics only (the fast path: no body).
read -r w u s < <(measure loadtest "$WORK/loadtest" --target "$URL" --users "$CONNS" --spawn-rate 100000 \
	--duration "${DURATION}s" --weights basic=0,custom_length=0,rapid=0,metrics=1 --status off --log-level warn --out "$WORK/lt")
reqs=$(python3 -c "import json;print(json.load(open('$WORK/lt/summary.json'))['total']['requests'])")
row loadtest "$reqs" "$w" "$u" "$s"
LT_PC=$(awk -v r="$reqs" -v w="$w" -v u="$u" -v s="$s" 'BEGIN{print (r/w)/((u+s)/w)}')

if command -v wrk >/dev/null; then
	read -r w u s < <(measure wrk wrk -t 1 -c "$CONNS" -d "${DURATION}s" "$URL/metrics")
	reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
	row wrk "$reqs" "$w" "$u" "$s"
	WRK_PC=$(awk -v r="$reqs" -v w="$w" -v u="$u" -v s="$s" 'BEGIN{print (r/w)/((u+s)/w)}')
else
	echo "wrk        not installed (apt-get install wrk)"
fi

if "$PY" -c "import locust" 2>/dev/null; then
	read -r w u s < <(measure locust "$PY" -m locust -f loadtest/bench/locustfile.py --headless -u "$CONNS" -r "$CONNS" \
		-t "${DURATION}s" --host "$URL" --csv "$WORK/locust" --only-summary)
	reqs=$(python3 -c "
import csv
for r in csv.DictReader(open('$WORK/locust_stats.csv')):
    if r['Name'] == 'Aggregated': print(r['Request Count'])")
	row locust "$reqs" "$w" "$u" "$s"
	LOCUST_PC=$(awk -v r="$reqs" -v w="$w" -v u="$u" -v s="$s" 'BEGIN{print (r/w)/((u+s)/w)}')
else
	echo "locust     not installed (apt-get install python3-locust)"
fi

echo
[ -n "${LOCUST_PC:-}" ] && awk -v a="$LT_PC" -v b="$LOCUST_PC" 'BEGIN{printf "loadtest / locust per core: %.1fx (target >= 10x)\n", a/b}'
[ -n "${WRK_PC:-}" ] && awk -v a="$LT_PC" -v b="$WRK_PC" 'BEGIN{printf "loadtest / wrk per core:    %.2fx (target >= 0.5x)\n", a/b}'
exit 0
