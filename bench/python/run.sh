#!/usr/bin/env bash
# Slow and fast requests behind one pool: ballast vs HAProxy (plain and hand-tuned) vs nginx
# in front of three gunicorn servers (Flask, 2 sync workers each), under an open-loop load.
#   bash bench/python/run.sh
#   PYBENCH_DURATION=20 bash bench/python/run.sh     # about 4 minutes
#
# Settings (environment):
#   PYBENCH_RATE        requests per second, Poisson arrivals (default 120: ~70 % of capacity)
#   PYBENCH_DURATION    measured seconds per run (default 60)
#   PYBENCH_WARMUP      seconds of the same load before each measured window (default 5)
#   PYBENCH_REPS        repetitions, proxy order rotated each time (default 1)
#   PYBENCH_SHAPES      a, b or a,b (default a,b)
#   PYBENCH_PROXIES     subset of ballast,haproxy,haproxy-tuned,nginx-lc,nginx-mc (default all);
#                       also ballast-fifo: ballast with queue admission fifo (first come, first
#                       served). haproxy-tuned: /api dequeued first, at most 5 /report in service
#                       (through a second listener on 127.0.0.1:18310)
#   PYBENCH_SEED        seed of the arrival times and paths (default 1; repetition n uses seed+n-1)
#   PYBENCH_KEEP        1: keep the temp dir (configs, logs of every process) even on success
#   PYBENCH_GUNICORN    gunicorn to run (default /usr/bin/gunicorn, else the one on PATH)
#   PYBENCH_BALLAST_REF a git ref (e.g. HEAD) to benchmark instead of the working tree: it is
#                       exported with `git archive` and built in the temp dir
#
# Writes bench/python/results/latest.md (and YYYY-MM-DD.md) and latest.json; see
# bench/python/README.md. Only 127.0.0.1:18300-18303 (and 18310 for haproxy-tuned) are used. Every process it starts is
# stopped on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=${PYBENCH_RATE:-120}
DURATION=${PYBENCH_DURATION:-60}
WARMUP=${PYBENCH_WARMUP:-5}
REPS=${PYBENCH_REPS:-1}
SHAPES=${PYBENCH_SHAPES:-a,b}
PROXIES=${PYBENCH_PROXIES:-ballast,haproxy,haproxy-tuned,nginx-lc,nginx-mc}
SEED=${PYBENCH_SEED:-1}
GUNICORN=${PYBENCH_GUNICORN:-}
COMMAND="$(env | grep '^PYBENCH_' | sort | tr '\n' ' ' || true)bash bench/python/run.sh"

PROXY_ADDR=127.0.0.1:18300
REPORTS_ADDR=127.0.0.1:18310 # haproxy-tuned's second listener, in front of the reports
REPORTS_MAX=5                # haproxy-tuned: reports in service at once, at most
BACKENDS=(127.0.0.1:18301 127.0.0.1:18302 127.0.0.1:18303)
WORKERS=2 # gunicorn sync workers per backend
RESULTS=bench/python/results
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi

WORK=""
LOAD_PID=""
GROUPS_RUNNING=() # "pgid name" of every process group started and not yet stopped

log() { echo "pybench: $*" >&2; }
die() { log "$*"; exit 1; }

# start_group NAME LOG CMD...: runs CMD in its own session (its pid is its process
# group id, so that stopping it reaches the children: gunicorn and nginx workers).
# Sets STARTED to the pid.
start_group() {
	local name=$1 logf=$2
	shift 2
	setsid "$@" >"$logf" 2>&1 </dev/null &
	STARTED=$!
	GROUPS_RUNNING+=("$STARTED $name")
}

group_alive() { kill -0 -- "-$1" 2>/dev/null; }

# group_is_ours PGID NAME: a process of the group is still the program started as
# NAME (so that a group id reused after an unexpected exit is left alone).
group_is_ours() {
	ps -eo pgid=,comm= | awk -v g="$1" -v n="${2:0:15}" '$1 == g && $2 == n {f = 1} END {exit !f}'
}

# stop_group PGID: SIGTERM to the group, SIGKILL to what is left after 5 s.
stop_group() {
	local pg=$1 entry kept=() name=""
	for entry in "${GROUPS_RUNNING[@]}"; do
		[[ "${entry%% *}" == "$pg" ]] && name=${entry#* }
	done
	if group_alive "$pg" && group_is_ours "$pg" "$name"; then
		kill -TERM -- "-$pg" 2>/dev/null || true
		for _ in $(seq 50); do group_alive "$pg" || break; sleep 0.1; done
		if group_alive "$pg"; then
			log "process group $pg did not stop within 5 s: SIGKILL"
			kill -KILL -- "-$pg" 2>/dev/null || true
		fi
	fi
	wait "$pg" 2>/dev/null || true
	for entry in "${GROUPS_RUNNING[@]}"; do
		[[ "${entry%% *}" == "$pg" ]] || kept+=("$entry")
	done
	GROUPS_RUNNING=("${kept[@]}")
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	local entry
	if [[ -n "$LOAD_PID" ]] && kill -0 "$LOAD_PID" 2>/dev/null; then
		kill -TERM "$LOAD_PID" 2>/dev/null || true
		wait "$LOAD_PID" 2>/dev/null || true
	fi
	for entry in "${GROUPS_RUNNING[@]}"; do
		stop_group "${entry%% *}"
	done
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		if ((rc == 0)) && [[ "${PYBENCH_KEEP:-}" != 1 ]]; then
			rm -rf "$WORK"
		else
			log "work dir with configs and logs kept: $WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# wait_http URL SECONDS [PGID]: until URL answers 2xx; fails early if PGID died.
wait_http() {
	local url=$1 secs=$2 pg=${3:-} i
	for ((i = 0; i < secs * 10; i++)); do
		curl -fsS -m 1 -o /dev/null "$url" 2>/dev/null && return 0
		if [[ -n "$pg" ]] && ! group_alive "$pg"; then return 1; fi
		sleep 0.1
	done
	return 1
}

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

check_tools() {
	if [[ -z "$GUNICORN" ]]; then
		if [[ -x /usr/bin/gunicorn ]]; then GUNICORN=/usr/bin/gunicorn; else GUNICORN=$(command -v gunicorn || true); fi
	fi
	[[ -n "$GUNICORN" ]] || die "gunicorn not found (Debian: apt-get install gunicorn python3-flask)"
	local p
	for p in ${PROXIES//,/ }; do
		case $p in
		ballast | ballast-fifo) ;;
		haproxy | haproxy-tuned) command -v haproxy >/dev/null || die "haproxy not found (Debian: apt-get install haproxy)" ;;
		nginx-lc | nginx-mc) command -v nginx >/dev/null || die "nginx not found (Debian: apt-get install nginx)" ;;
		*) die "unknown proxy $p in PYBENCH_PROXIES (ballast, ballast-fifo, haproxy, haproxy-tuned, nginx-lc, nginx-mc)" ;;
		esac
	done
	command -v curl >/dev/null || die "curl not found"
	command -v setsid >/dev/null || die "setsid not found (util-linux)"
}

build() {
	local commit
	if [[ -n "${PYBENCH_BALLAST_REF:-}" ]]; then
		commit=$(git rev-parse --short "$PYBENCH_BALLAST_REF^{commit}")
		log "building ballast at $PYBENCH_BALLAST_REF ($commit)"
		mkdir "$WORK/src"
		git archive "$commit" | tar -x -C "$WORK/src"
		(cd "$WORK/src" && go build -ldflags "-X main.commit=$commit" -o "$WORK/bin/ballast" ./cmd/ballast)
		BALLAST="$WORK/bin/ballast"
	else
		commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
		# Changes that reach the binary: tracked or new files outside bench/, tests excluded.
		if [[ -n "$(git diff --name-only HEAD -- . ':!bench' ':!*_test.go' 2>/dev/null)" || \
			-n "$(git ls-files --others --exclude-standard -- '*.go' ':!bench' ':!*_test.go' 2>/dev/null)" ]]; then
			commit="$commit + uncommitted changes"
		fi
		log "building ballast (working tree, $commit)"
		go build -o bin/ballast ./cmd/ballast
		BALLAST="$PWD/bin/ballast"
	fi
	COMMIT=$commit
	go build -o "$WORK/bin/openloop" ./bench/cmd/openloop
}

# write_haproxy plain|tuned: HAProxy's config on stdout. plain: one backend, leastconn,
# maxconn 2 per server (HAProxy's FIFO queue). tuned: the same backend, and in front of it
# what the issue calls the best hand-tuned HAProxy for shape a: /api gets priority in the
# queue (set-priority-class: the lowest class is dequeued first, the default is 0), and
# /report goes through a backend whose one server is a second listener of the same process
# with maxconn $REPORTS_MAX, which forwards to the shared backend: at most $REPORTS_MAX
# reports in service at once, the others wait in HAProxy's queue of that backend.
write_haproxy() {
	local flavour=$1 b i
	cat <<EOF
global
    nbthread 2
    maxconn 4096
    log stderr format raw local0 notice
EOF
	if [[ $flavour == tuned ]]; then
		echo "    stats socket $WORK/haproxy-tuned/stats.sock mode 600 level user"
	fi
	cat <<EOF

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    http-reuse always
    maxconn 4096
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 10s

EOF
	if [[ $flavour == tuned ]]; then
		cat <<EOF
frontend fe
    bind $PROXY_ADDR
    acl is_api path /api
    acl is_report path_beg /report
    # The lowest class is dequeued first (the default is 0): /api goes ahead of the rest.
    http-request set-priority-class int(-10) if is_api
    use_backend reports if is_report
    default_backend app

# At most $REPORTS_MAX reports in service: the extra listener is this backend's only server.
backend reports
    server reports $REPORTS_ADDR maxconn $REPORTS_MAX

frontend fe_reports
    bind $REPORTS_ADDR
    default_backend app

EOF
	else
		cat <<EOF
frontend fe
    bind $PROXY_ADDR
    default_backend app

EOF
	fi
	cat <<EOF
backend app
    balance leastconn
    option httpchk GET /healthz
EOF
	i=1
	for b in "${BACKENDS[@]}"; do
		echo "    server s$i $b maxconn $WORKERS check inter 2s"
		i=$((i + 1))
	done
}

# write_configs: one config per proxy in $WORK/<proxy>/.
write_configs() {
	local b
	mkdir -p "$WORK"/{ballast,haproxy,haproxy-tuned,nginx-lc,nginx-mc,logs,runs}

	{
		echo "shutdown_timeout: 2s"
		echo "listeners:"
		echo "  - name: bench"
		echo "    listen: $PROXY_ADDR"
		echo "    routes:"
		echo "      - pool: app"
		echo "pools:"
		echo "  app:"
		echo "    algorithm: least_conn"
		echo "    backends:"
		for b in "${BACKENDS[@]}"; do echo "      - {addr: $b, max_conns: $WORKERS}"; done
		echo "    queue: {max: 1000, timeout: 10s}"
		echo "    health_check: {path: /healthz, interval: 2s}"
	} >"$WORK/ballast/ballast.yaml"
	sed 's/^    queue: {max: 1000, timeout: 10s}$/    queue: {max: 1000, timeout: 10s, admission: fifo}/' \
		"$WORK/ballast/ballast.yaml" >"$WORK/ballast/ballast-fifo.yaml"

	write_haproxy plain >"$WORK/haproxy/haproxy.cfg"
	write_haproxy tuned >"$WORK/haproxy-tuned/haproxy.cfg"

	local flavour dir k temps
	for flavour in lc mc; do
		dir="$WORK/nginx-$flavour"
		temps=""
		for k in client_body proxy fastcgi uwsgi scgi; do temps+="    ${k}_temp_path $dir/${k}_temp;"$'\n'; done
		{
			cat <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$temps    keepalive_timeout 75s;
    keepalive_requests 100000;
    upstream app {
        zone app 64k;
        least_conn;
EOF
			for b in "${BACKENDS[@]}"; do
				if [[ $flavour == mc ]]; then echo "        server $b max_conns=$WORKERS;"; else echo "        server $b;"; fi
			done
			cat <<EOF
        keepalive 32;
    }
    server {
        listen $PROXY_ADDR backlog=4096;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }
    }
}
EOF
		} >"$dir/nginx.conf"
	done
}

start_backends() {
	local i=0 b
	for b in "${BACKENDS[@]}"; do
		i=$((i + 1))
		start_group gunicorn "$WORK/logs/gunicorn-$i.log" "$GUNICORN" -k sync -w "$WORKERS" -b "$b" \
			--backlog 2048 --graceful-timeout 3 --chdir "$PWD/examples/flask-gunicorn" app:app
		BACKEND_PGIDS+=("$STARTED")
	done
	i=0
	for b in "${BACKENDS[@]}"; do
		wait_http "http://$b/healthz" 30 "${BACKEND_PGIDS[$i]}" ||
			die "gunicorn on $b did not come up: $(tail -5 "$WORK/logs/gunicorn-$((i + 1)).log")"
		i=$((i + 1))
	done
	log "3 gunicorn servers up on ${BACKENDS[*]} ($WORKERS sync workers each)"
}

# measure_service: mean time of sequential /api and /report requests straight to one
# gunicorn (connection included), and the capacity that follows for the 90/10 mix.
measure_service() {
	local b=${BACKENDS[0]} api report
	api=$(for _ in $(seq 40); do curl -fsS -o /dev/null -w '%{time_total}\n' "http://$b/api"; done |
		awk '{s += $1} END {printf "%.2f", s / NR * 1000}')
	report=$(for _ in $(seq 5); do curl -fsS -o /dev/null -w '%{time_total}\n' "http://$b/report"; done |
		awk '{s += $1} END {printf "%.2f", s / NR * 1000}')
	local slots=$((${#BACKENDS[@]} * WORKERS))
	NOMINAL=$(awk -v n="$slots" 'BEGIN {printf "%.1f", n / (0.9 * 0.005 + 0.1 * 0.300)}')
	MEASURED=$(awk -v n="$slots" -v a="$api" -v r="$report" 'BEGIN {printf "%.1f", n / ((0.9 * a + 0.1 * r) / 1000)}')
	API_MS=$api
	REPORT_MS=$report
	log "rate $RATE req/s; nominal capacity $slots workers / (0.9 × 5 ms + 0.1 × 300 ms) = $NOMINAL req/s" \
		"($(awk -v r="$RATE" -v c="$NOMINAL" 'BEGIN {printf "%.0f", 100 * r / c}') %)"
	log "measured one request at a time: /api $api ms, /report $report ms → capacity $MEASURED req/s" \
		"($(awk -v r="$RATE" -v c="$MEASURED" 'BEGIN {printf "%.0f", 100 * r / c}') %)"
}

# start_proxy PROXY LOGFILE
start_proxy() {
	local p=$1 logf=$2
	case $p in
	ballast | ballast-fifo) start_group ballast "$logf" "$BALLAST" run -c "$WORK/ballast/$p.yaml" ;;
	haproxy | haproxy-tuned) start_group haproxy "$logf" haproxy -db -f "$WORK/$p/haproxy.cfg" ;;
	nginx-lc | nginx-mc)
		start_group nginx "$logf" nginx -p "$WORK/$p/" -e "$WORK/$p/error.log" -c "$WORK/$p/nginx.conf"
		;;
	esac
	PROXY_PGID=$STARTED
	wait_http "http://$PROXY_ADDR/healthz" 20 "$PROXY_PGID" ||
		die "$p did not come up on $PROXY_ADDR: $(tail -5 "$logf")"
}

# haproxy_stat SOCKET: HAProxy's `show stat` (CSV) on stdout.
haproxy_stat() {
	"$PYTHON" - "$1" <<'PYEOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
PYEOF
}

# machine_ticks: busy CPU time of the whole machine (user, nice, system, irq, softirq).
machine_ticks() { awk 'NR == 1 {print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }

# group_ticks PGID...: user + system CPU time of every process in these process groups.
group_ticks() {
	cat /proc/[0-9]*/stat 2>/dev/null | sed 's/^.*) //' |
		awk -v gs="$*" 'BEGIN {n = split(gs, a, " "); for (i = 1; i <= n; i++) g[a[i]] = 1}
			($3 in g) {s += $12 + $13} END {print s + 0}'
}

# settle: each gunicorn answers /healthz again, i.e. whatever was left in its
# listen backlog by the previous run has been served.
settle() {
	local b
	for b in "${BACKENDS[@]}"; do
		curl -fsS -m 60 -o /dev/null "http://$b/healthz" || log "warning: $b did not answer /healthz after the run"
	done
	sleep 1
}

run_one() {
	local p=$1 shape=$2 rep=$3 out
	out="$WORK/runs/$shape-$p-$rep.json"
	start_proxy "$p" "$WORK/logs/$shape-$p-$rep.log"
	log "shape $shape, rep $rep: $p (${WARMUP} s warm-up + ${DURATION} s)"
	local m0 p0 b0 t0 m1 p1 b1 t1
	m0=$(machine_ticks) p0=$(group_ticks "$PROXY_PGID") b0=$(group_ticks "${BACKEND_PGIDS[@]}") t0=$(date +%s.%N)
	# In the background, so that a signal to this script is handled at once.
	"$WORK/bin/openloop" -url "http://$PROXY_ADDR" -rate "$RATE" -duration "${DURATION}s" \
		-warmup "${WARMUP}s" -shape "$shape" -seed $((SEED + rep - 1)) -label "$p" >"$out" &
	LOAD_PID=$!
	wait "$LOAD_PID" || die "openloop failed for $p shape $shape"
	LOAD_PID=""
	if [[ $p == haproxy-tuned ]]; then
		# HAProxy's counters of the run (warm-up included): smax of the server "reports"
		# is the most reports that were in service at once, qmax the most that waited.
		haproxy_stat "$WORK/haproxy-tuned/stats.sock" >"${out%.json}.hastat" ||
			log "warning: could not read haproxy-tuned's stats socket"
	fi
	m1=$(machine_ticks) p1=$(group_ticks "$PROXY_PGID") b1=$(group_ticks "${BACKEND_PGIDS[@]}") t1=$(date +%s.%N)
	# CPU use during the run, for the report (openloop reports its own).
	printf 'wall_s=%s\nclk_tck=%s\nnproc=%s\nmachine_ticks=%s\nproxy_ticks=%s\nbackend_ticks=%s\n' \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')" "$CLK_TCK" "$(nproc)" \
		$((m1 - m0)) $((p1 - p0)) $((b1 - b0)) >"${out%.json}.cpu"
	stop_group "$PROXY_PGID"
	PROXY_PGID=""
	settle
	RUN_FILES+=("$out")
}

main() {
	check_tools
	local a
	local extra=()
	[[ ",$PROXIES," == *,haproxy-tuned,* ]] && extra=("$REPORTS_ADDR")
	for a in "$PROXY_ADDR" "${BACKENDS[@]}" "${extra[@]}"; do
		port_free "$a" || die "$a is in use"
	done
	CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
	WORK=$(mktemp -d /tmp/ballast-pybench.XXXXXX)
	chmod 755 "$WORK" # nginx workers run as nobody when started by root
	build
	write_configs
	BACKEND_PGIDS=()
	RUN_FILES=()
	local started load_before
	started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	start_backends
	measure_service

	local proxies shapes n rot=0 rep shape i
	IFS=, read -r -a proxies <<<"$PROXIES"
	IFS=, read -r -a shapes <<<"$SHAPES"
	n=${#proxies[@]}
	for ((rep = 1; rep <= REPS; rep++)); do
		for shape in "${shapes[@]}"; do
			for ((i = 0; i < n; i++)); do
				run_one "${proxies[$(((rot + i) % n))]}" "$shape" "$rep"
			done
			rot=$((rot + 1))
		done
	done

	mkdir -p "$RESULTS"
	"$PYTHON" bench/python/report.py --results "$RESULTS" \
		--meta started="$started" --meta finished="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		--meta commit="$COMMIT" --meta command="$COMMAND" \
		--meta nproc="$(nproc)" \
		--meta cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
		--meta kernel="$(uname -r)" \
		--meta loadavg_before="$load_before" --meta loadavg_after="$(cut -d' ' -f1-3 /proc/loadavg)" \
		--meta rate="$RATE" --meta duration="$DURATION" --meta warmup="$WARMUP" --meta reps="$REPS" \
		--meta nominal_capacity="$NOMINAL" --meta measured_capacity="$MEASURED" \
		--meta api_ms="$API_MS" --meta report_ms="$REPORT_MS" \
		--meta haproxy="$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}')" \
		--meta nginx="$(nginx -v 2>&1 | sed 's|.*nginx/||')" \
		--meta gunicorn="$("$GUNICORN" --version 2>&1 | sed 's/[^0-9.]//g')" \
		--meta proxies="$PROXIES" \
		"${RUN_FILES[@]}"
}

main "$@"
