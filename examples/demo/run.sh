#!/usr/bin/env bash
# Builds ballast and runs it in front of three small Python backends.
#   bash examples/demo/run.sh          # serve until Ctrl-C
#   bash examples/demo/run.sh --once   # show the rotation, then stop
set -euo pipefail
cd "$(dirname "$0")/../.."
once=false
[[ "${1:-}" == "--once" ]] && once=true

mkdir -p bin
commit=$(git rev-parse --short HEAD 2>/dev/null || true)
go build -ldflags "-X main.commit=${commit}" -o bin/ballast ./cmd/ballast

pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for i in 1 2 3; do
	python3 examples/demo/backend.py "backend-$i" "900$i" &
	pids+=($!)
done
./bin/ballast run -c examples/demo/demo.yaml &
pids+=($!)

# Wait until every backend and ballast answer.
wait_for() {
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: $1 did not come up" >&2
	exit 1
}
for i in 1 2 3; do wait_for "http://127.0.0.1:900$i/healthz"; done
wait_for http://127.0.0.1:8080/healthz

echo
echo "ballast is balancing http://127.0.0.1:8080/ across three Python backends (round robin):"
for _ in 1 2 3 4 5 6; do
	curl -fsS http://127.0.0.1:8080/
done
echo
if $once; then
	exit 0
fi
echo "Try it yourself:  curl http://127.0.0.1:8080/"
echo "Press Ctrl-C to stop."
wait
