#!/usr/bin/env bash
# Builds ballast and runs it with examples/demo/demo.yaml: ballast starts three
# copies of a small Python app (standard library only) and balances across them.
#   bash examples/demo/run.sh          # serve until Ctrl-C
#   bash examples/demo/run.sh --once   # show the rotation and a rolling restart, then stop
set -euo pipefail
cd "$(dirname "$0")/../.."
once=false
[[ "${1:-}" == "--once" ]] && once=true

mkdir -p bin
commit=$(git rev-parse --short HEAD 2>/dev/null || true)
go build -ldflags "-X main.commit=${commit}" -o bin/ballast ./cmd/ballast

pid=""
cleanup() {
	# ballast drains and stops the app processes it started.
	if [[ -n "$pid" ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM

./bin/ballast run -c examples/demo/demo.yaml 2>>"${BALLAST_DEMO_LOG:-/dev/null}" &
pid=$!

# Wait until ballast answers and all three app processes are up.
up=0
for _ in $(seq 200); do
	up=$(curl -fsS http://127.0.0.1:9090/api/v1/pools/app 2>/dev/null | grep -o '"state": *"up"' | wc -l || true)
	[[ "$up" == 3 ]] && break
	sleep 0.1
done
if [[ "$up" != 3 ]]; then
	echo "demo: the three app processes did not come up" >&2
	exit 1
fi

echo
echo "ballast runs three copies of examples/wsgi/app.py and balances http://127.0.0.1:8080/ across them (round robin):"
for _ in 1 2 3 4 5 6; do
	curl -fsS http://127.0.0.1:8080/
done
echo
echo "A rolling restart (a deploy): each copy is replaced by a new one, which gets traffic once healthy:"
echo "  curl -X POST http://127.0.0.1:9090/api/v1/pools/app/restart"
curl -fsS -X POST http://127.0.0.1:9090/api/v1/pools/app/restart
echo
for _ in 1 2 3; do
	curl -fsS http://127.0.0.1:8080/
done
echo
if $once; then
	exit 0
fi
echo "Try it yourself:  curl http://127.0.0.1:8080/    (admin API and dashboard: http://127.0.0.1:9090/)"
echo "Press Ctrl-C to stop."
wait "$pid"
