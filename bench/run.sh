#!/usr/bin/env bash
# Benchmarks ballast against HAProxy and nginx: bash bench/run.sh
#
# Settings (environment):
#   BENCH_DURATION   seconds per measured run (default 10)
#   BENCH_WARMUP     seconds of warm-up before each measured run (default 2)
#   BENCH_REPS       repetitions, proxy order rotated each time (default 3)
#   BENCH_SCENARIOS  comma-separated subset of S1..S7 (default all)
#   BENCH_IDLE_CONNS idle connections held in S5 (default 10000)
#   BENCH_BALLAST_ENGINE  native or net_http: ballast's engine for plaintext HTTP (default native)
#   BENCH_BALLAST_REF  a git ref (e.g. HEAD, v0.2) to benchmark instead of the working
#                    tree: it is exported with `git archive` and built in the temp dir
#
# Writes bench/results/latest.md (and YYYY-MM-DD.md), latest.json, latest.tsv;
# see bench/README.md. Every process it starts is stopped on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
REPS=${BENCH_REPS:-3}
SCENARIOS=${BENCH_SCENARIOS:-S1,S2,S3,S4,S5,S6,S7}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
COMMAND="$(env | grep '^BENCH_' | sort | tr '\n' ' ' || true)bash bench/run.sh"

WORK=""
HARNESS_PID=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [[ -n "$HARNESS_PID" ]] && kill -0 "$HARNESS_PID" 2>/dev/null; then
		kill -TERM "$HARNESS_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$HARNESS_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$HARNESS_PID" 2>/dev/null || true
	fi
	# Should the harness itself have died: the process groups it had running
	# (it keeps $WORK/pgids current), each only while a member of the group is
	# still the program the harness started (nginx workers outlive their master).
	if [[ -n "$WORK" && -f "$WORK/pgids" ]]; then
		local pg name
		while read -r pg name; do
			[[ -n "$pg" ]] || continue
			if ps -eo pgid=,comm= | awk -v g="$pg" -v n="${name:0:15}" '$1 == g && $2 == n {f = 1} END {exit !f}'; then
				kill -KILL -- "-$pg" 2>/dev/null || true
			fi
		done <"$WORK/pgids"
	fi
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		if ((rc == 0)); then
			rm -rf "$WORK"
		else
			echo "bench: work dir with configs and logs kept: $WORK" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

install_tools() {
	local need=() optional=()
	command -v nginx >/dev/null || need+=(nginx)
	command -v haproxy >/dev/null || need+=(haproxy)
	command -v wrk >/dev/null || need+=(wrk)
	command -v h2load >/dev/null || need+=(nghttp2-client)
	# S7 runs nginx as a TCP proxy; Debian ships its stream module separately.
	local v=""
	command -v nginx >/dev/null && v=$(nginx -V 2>&1)
	if [[ -z "$v" || ("$v" == *--with-stream=dynamic* && ! -e /usr/lib/nginx/modules/ngx_stream_module.so) ]]; then
		optional+=(libnginx-mod-stream)
	fi
	((${#need[@]} + ${#optional[@]})) || return 0
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		if ((${#need[@]})); then
			echo "bench: missing ${need[*]}; install them (Debian: apt-get install -y nginx haproxy wrk nghttp2-client)" >&2
			exit 1
		fi
		echo "bench: no nginx stream module (libnginx-mod-stream): S7 runs without nginx" >&2
		return 0
	fi
	echo "bench: installing ${need[*]} ${optional[*]}"
	apt-get update -qq
	if ((${#need[@]})); then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	fi
	if ((${#optional[@]})); then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${optional[@]}" >/dev/null ||
			echo "bench: could not install ${optional[*]}: S7 runs without nginx" >&2
	fi
}

raise_nofile() {
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	local n
	n=$(ulimit -n)
	if [[ "$n" != unlimited ]] && ((n < 65536)); then
		echo "bench: open-file limit is $n (hard limit), not 65536" >&2
	fi
}

main() {
	install_tools
	raise_nofile
	WORK=$(mktemp -d /tmp/ballast-bench.XXXXXX)
	local ballast="$PWD/bin/ballast" commit
	if [[ -n "${BENCH_BALLAST_REF:-}" ]]; then
		commit=$(git rev-parse --short "$BENCH_BALLAST_REF^{commit}")
		echo "bench: building ballast at $BENCH_BALLAST_REF ($commit)"
		mkdir "$WORK/src"
		git archive "$commit" | tar -x -C "$WORK/src"
		(cd "$WORK/src" && go build -ldflags "-X main.commit=$commit" -o "$WORK/bin/ballast" ./cmd/ballast)
		ballast="$WORK/bin/ballast"
	else
		commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
		# Changes that reach the binary: tracked or new files outside bench/, tests excluded.
		if [[ -n "$(git diff --name-only HEAD -- . ':!bench' ':!*_test.go' 2>/dev/null)" || \
			-n "$(git ls-files --others --exclude-standard -- '*.go' ':!bench' ':!*_test.go' 2>/dev/null)" ]]; then
			commit="$commit + uncommitted changes"
		fi
		echo "bench: building ballast (working tree, $commit)"
		go build -o bin/ballast ./cmd/ballast
	fi
	go build -o "$WORK/harness" ./bench/cmd/harness
	go build -o "$WORK/idleconns" ./bench/idleconns
	"$WORK/harness" -ballast "$ballast" -commit "$commit" -idleconns "$WORK/idleconns" -work "$WORK" \
		-results bench/results -duration "$DURATION" -warmup "$WARMUP" -reps "$REPS" \
		-scenarios "$SCENARIOS" -idle-conns "$IDLE_CONNS" -command "$COMMAND" &
	HARNESS_PID=$!
	wait "$HARNESS_PID"
}

main "$@"
