#!/usr/bin/env bash
# Requests/s per CPU core of loadtest, wrk and Locust against the same trivial
# loopback endpoint (okserver answers 200 "ok"), each run for DURATION with CONNS
# concurrent connections/users, ROUNDS times in turn (the machine is shared and noisy:
# the table shows each tool's median and range). Per core = requests ÷ CPU seconds
# the generator used (user + system, children included, from /usr/bin/time).
#
# The "floor" row is loadtest/bench/floor: a bare epoll loop with raw system calls and
# no recording, i.e. the per-core ceiling of any generator that keeps one request in
# flight per connection on this machine — nearly all of its cost is the kernel's
# loopback TCP work.
#
#   loadtest/bench/compare.sh                   # defaults: DURATION=20 CONNS=50 ROUNDS=3
#   DURATION=30 CONNS=100 ROUNDS=5 loadtest/bench/compare.sh
#
# Needs: go, /usr/bin/time, wrk (apt-get install wrk), python3-locust (apt-get install
# python3-locust). A missing tool's row says so. Run on a quiet machine: the server
# shares the CPUs with the generator.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-20}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18080}
URL="http://127.0.0.1:$PORT"
PY=${PYTHON:-/usr/bin/python3}
WORK=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

go build -trimpath -o "$WORK/" ./loadtest/cmd/loadtest ./loadtest/bench/okserver ./loadtest/bench/floor
"$WORK/okserver" -addr "127.0.0.1:$PORT" &
SERVER_PID=$!
for _ in $(seq 50); do curl -fsS "$URL/" >/dev/null 2>&1 && break; sleep 0.1; done
kill -0 "$SERVER_PID" 2>/dev/null || { echo "okserver did not start (port $PORT busy? set PORT=...)" >&2; exit 1; }

TOOLS="floor loadtest"
command -v wrk >/dev/null && TOOLS="$TOOLS wrk"
"$PY" -c "import locust" 2>/dev/null && TOOLS="$TOOLS locust"

# once NAME: one run of tool NAME under /usr/bin/time; appends "req/s cores per-core"
# to $WORK/NAME.rows.
once() {
	local name=$1 reqs
	case $name in
	floor) cmd=("$WORK/floor" -addr "127.0.0.1:$PORT" -conns "$CONNS" -duration "${DURATION}s" -path /metrics) ;;
	# closed loop, CONNS users, GET /metrics only (the fast path: no body).
	loadtest) cmd=("$WORK/loadtest" --target "$URL" --users "$CONNS" --spawn-rate 100000 --duration "${DURATION}s" \
		--weights basic=0,custom_length=0,rapid=0,metrics=1 --status off --log-level warn --out "$WORK/lt") ;;
	wrk) cmd=(wrk -t 1 -c "$CONNS" -d "${DURATION}s" "$URL/metrics") ;;
	locust) cmd=("$PY" -m locust -f loadtest/bench/locustfile.py --headless -u "$CONNS" -r "$CONNS" \
		-t "${DURATION}s" --host "$URL" --csv "$WORK/locust" --only-summary) ;;
	esac
	/usr/bin/time -o "$WORK/$name.time" -f "%e %U %S" "${cmd[@]}" >"$WORK/$name.out" 2>"$WORK/$name.err" || {
		echo "$name failed: $(tail -3 "$WORK/$name.err")" >&2
		return
	}
	case $name in
	floor) reqs=$(awk '/^requests/ {print $2}' "$WORK/floor.out") ;;
	loadtest) reqs=$("$PY" -c "import json;print(json.load(open('$WORK/lt/summary.json'))['total']['requests'])") ;;
	wrk) reqs=$(awk '/requests in/ {print $1}' "$WORK/wrk.out") ;;
	locust) reqs=$("$PY" -c "
import csv
for r in csv.DictReader(open('$WORK/locust_stats.csv')):
    if r['Name'] == 'Aggregated': print(r['Request Count'])") ;;
	esac
	tail -1 "$WORK/$name.time" | awk -v r="$reqs" '{ w = $1; c = ($2 + $3) / w
		printf "%.0f %.2f %.0f\n", r / w, c, (c > 0) ? r / w / c : 0 }' >>"$WORK/$name.rows"
}

for round in $(seq "$ROUNDS"); do
	for t in $TOOLS; do once "$t"; done
	echo "round $round of $ROUNDS done" >&2
done

# median NAME: "req/s cores per-core min max" of the run with the median per-core value.
median() {
	[ -s "$WORK/$1.rows" ] || return 0
	sort -n -k3 "$WORK/$1.rows" | awk '{ r[NR] = $0; v[NR] = $3 } END {
		split(r[int((NR + 1) / 2)], m, " "); print m[1], m[2], m[3], v[1], v[NR] }'
}

printf "%-10s %10s %7s %15s %17s\n" tool "req/s" cores "req/s per core" "per-core range"
for t in floor loadtest wrk locust; do
	if [[ " $TOOLS " != *" $t "* ]]; then
		case $t in
		wrk) echo "wrk        not installed (apt-get install wrk)" ;;
		locust) echo "locust     not installed (apt-get install python3-locust)" ;;
		esac
		continue
	fi
	read -r rps cores pc lo hi < <(median "$t") || { echo "$t        no successful run"; continue; }
	printf "%-10s %10s %7s %15s %17s\n" "$t" "$rps" "$cores" "$pc" "$lo-$hi"
	declare "PC_$t=$pc"
done

echo
ratio() { # a b target label
	[ -n "${!1:-}" ] && [ -n "${!2:-}" ] && awk -v a="${!1}" -v b="${!2}" -v t="$3" -v l="$4" \
		'BEGIN { printf "%-28s %5.2fx (%s)\n", l, a / b, t }'
	return 0
}
ratio PC_loadtest PC_locust "target >= 10x" "loadtest / locust per core:"
ratio PC_loadtest PC_wrk "target >= 0.5x" "loadtest / wrk per core:"
ratio PC_wrk PC_locust "for scale" "wrk / locust per core:"
ratio PC_floor PC_locust "ceiling of any generator" "floor / locust per core:"
ratio PC_loadtest PC_floor "for scale" "loadtest / floor per core:"
exit 0
