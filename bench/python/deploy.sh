#!/usr/bin/env bash
# A deploy under load: ballast runs three gunicorn servers itself (launch) and replaces them
# one at a time (POST /api/v1/pools/app/restart) while an open-loop load of GET / and
# POST /echo (2 KiB) goes through it. What a client sees during the rolling restart, compared
# with before and after it.
#   bash bench/python/deploy.sh                      # 3 repetitions of 20 s: about 2 minutes
#   PYBENCH_REPS=1 bash bench/python/deploy.sh
#
# Settings (environment):
#   PYBENCH_REPS        repetitions (default 3); ballast and its gunicorns start afresh each time
#   PYBENCH_RATE        requests per second, Poisson arrivals (default 150)
#   PYBENCH_DURATION    seconds of load per repetition (default 20)
#   PYBENCH_RESTART_AT  seconds into the load when the restart is asked for (default 5)
#   PYBENCH_SEED        seed of the arrival times (default 1; repetition n uses seed+n-1)
#   PYBENCH_KEEP        1: keep the temp dir (config, logs, per-request records) even on success
#   PYBENCH_GUNICORN    gunicorn to launch (default /usr/bin/gunicorn, else the one on PATH)
#   PYBENCH_BALLAST_REF a git ref to benchmark instead of the working tree (git archive)
#
# Writes bench/python/results/deploy-latest.md (and deploy-YYYY-MM-DD.md) and
# deploy-latest.json; see bench/python/README.md. Uses 127.0.0.1:18300 (listener),
# 127.0.0.1:18309 (admin) and 127.0.0.1:18320-18339 (the gunicorns) only. Everything it
# starts is stopped on exit, Ctrl-C included, and it checks that no gunicorn is left.
set -euo pipefail
cd "$(dirname "$0")/../.."

REPS=${PYBENCH_REPS:-3}
RATE=${PYBENCH_RATE:-150}
DURATION=${PYBENCH_DURATION:-20}
RESTART_AT=${PYBENCH_RESTART_AT:-5}
SEED=${PYBENCH_SEED:-1}
GUNICORN=${PYBENCH_GUNICORN:-}
COMMAND="$(env | grep '^PYBENCH_' | sort | tr '\n' ' ' || true)bash bench/python/deploy.sh"

PROXY_ADDR=127.0.0.1:18300
ADMIN_ADDR=127.0.0.1:18309
PORT_LO=18320
PORT_HI=18339
INSTANCES=3
RESULTS=bench/python/results
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
# A gunicorn of ours: its command line binds 127.0.0.1 to a port of PORT_LO..PORT_HI.
GUNICORN_RE='gunicorn.*127\.0\.0\.1:183[23][0-9]( |$)'

WORK=""
LOAD_PID=""
CURL_PID=""
BALLAST_PID=""

log() { echo "deploy: $*" >&2; }
die() { log "$*"; exit 1; }

# our_gunicorns: pid of every process that is one of our gunicorns (masters and workers):
# its command line binds a port of ours, or it was seen under ballast (remember_tree) and
# still runs gunicorn (a worker renamed by setproctitle has no port in its command line).
our_gunicorns() {
	{
		ps -eo pid=,args= | awk -v re="$GUNICORN_RE" '$0 ~ re && $2 !~ /awk/ {print $1}'
		if [[ -n "$WORK" && -f "$WORK/known.pids" ]]; then
			local p
			while read -r p; do
				if tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q gunicorn; then echo "$p"; fi
			done <"$WORK/known.pids"
		fi
		true
	} | sort -un
}

# remember_tree: adds every descendant of ballast to $WORK/known.pids.
remember_tree() {
	[[ -n "$BALLAST_PID" ]] || return 0
	ps -eo pid=,ppid= | awk -v root="$BALLAST_PID" '
		{kids[$2] = kids[$2] " " $1}
		END {
			n = split(kids[root], q, " ")
			for (i = 1; i <= n; i++) {
				print q[i]
				m = split(kids[q[i]], more, " ")
				for (j = 1; j <= m; j++) q[++n] = more[j]
			}
		}' >>"$WORK/known.pids"
}

# stop_ballast: SIGTERM to ballast, which drains and stops the gunicorns it launched; SIGKILL
# after 30 s (its instances then get SIGTERM from the parent-death signal).
stop_ballast() {
	[[ -n "$BALLAST_PID" ]] || return 0
	if kill -0 "$BALLAST_PID" 2>/dev/null; then
		kill -TERM "$BALLAST_PID" 2>/dev/null || true
		for _ in $(seq 300); do kill -0 "$BALLAST_PID" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$BALLAST_PID" 2>/dev/null; then
			log "ballast did not stop within 30 s: SIGKILL"
			kill -KILL "$BALLAST_PID" 2>/dev/null || true
		fi
	fi
	wait "$BALLAST_PID" 2>/dev/null || true
	BALLAST_PID=""
}

# gunicorns_left SECONDS: waits until none of our gunicorns is left, at most SECONDS;
# prints how many are left.
gunicorns_left() {
	local n=0
	for _ in $(seq $(($1 * 10))); do
		n=$(our_gunicorns | wc -l)
		((n == 0)) && break
		sleep 0.1
	done
	echo "$n"
}

# kill_gunicorns_left: a last resort, by pid: SIGTERM, then SIGKILL.
kill_gunicorns_left() {
	local pids
	pids=$(our_gunicorns)
	[[ -n "$pids" ]] || return 0
	log "gunicorn left after ballast stopped: $(echo $pids); SIGTERM"
	kill -TERM $pids 2>/dev/null || true
	sleep 3
	pids=$(our_gunicorns)
	[[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	local pid
	for pid in "$LOAD_PID" "$CURL_PID"; do
		if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	stop_ballast
	if [[ "$(gunicorns_left 15)" != 0 ]]; then
		kill_gunicorns_left
		rc=1
	fi
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		if ((rc == 0)) && [[ "${PYBENCH_KEEP:-}" != 1 ]]; then
			rm -rf "$WORK"
		else
			log "work dir with config, logs and per-request records kept: $WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

now_ms() { date +%s%3N; }

check_tools() {
	if [[ -z "$GUNICORN" ]]; then
		if [[ -x /usr/bin/gunicorn ]]; then GUNICORN=/usr/bin/gunicorn; else GUNICORN=$(command -v gunicorn || true); fi
	fi
	[[ -n "$GUNICORN" ]] || die "gunicorn not found (Debian: apt-get install gunicorn python3-flask)"
	command -v curl >/dev/null || die "curl not found"
	command -v setsid >/dev/null || die "setsid not found (util-linux)"
	[[ $RESTART_AT =~ ^[0-9]+$ && $DURATION =~ ^[0-9]+$ ]] || die "PYBENCH_RESTART_AT and PYBENCH_DURATION must be whole seconds"
	((RESTART_AT < DURATION)) || die "PYBENCH_RESTART_AT ($RESTART_AT) must be less than PYBENCH_DURATION ($DURATION)"
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

write_config() {
	cat >"$WORK/ballast.yaml" <<EOF
admin:
  listen: $ADMIN_ADDR
listeners:
  - name: web
    listen: $PROXY_ADDR
    routes:
      - pool: app
pools:
  app:
    algorithm: least_conn
    health_check: {path: /healthz, interval: 1s}
    launch:
      command: ["$GUNICORN", "-w", "2", "-b", "127.0.0.1:{port}", "app:app"]
      instances: $INSTANCES
      ports: $PORT_LO-$PORT_HI
      workdir: $PWD/examples/flask-gunicorn
EOF
}

# pool_state FILE: saves GET /api/v1/pools/app in FILE; prints the number of backends up.
pool_state() {
	curl -fsS -m 2 "http://$ADMIN_ADDR/api/v1/pools/app" -o "$1" 2>/dev/null || { echo 0; return; }
	"$PYTHON" -c 'import json, sys
p = json.load(open(sys.argv[1]))
print(sum(1 for b in p.get("backends") or [] if b.get("state") == "up"))' "$1" 2>/dev/null || echo 0
}

# start_ballast REP: starts ballast, waits until the pool has INSTANCES backends up.
start_ballast() {
	local rep=$1 logf="$WORK/logs/ballast-$1.log" up=0
	setsid "$BALLAST" run -c "$WORK/ballast.yaml" >"$logf" 2>&1 </dev/null &
	BALLAST_PID=$!
	for _ in $(seq 600); do
		kill -0 "$BALLAST_PID" 2>/dev/null || die "ballast exited: $(tail -5 "$logf")"
		up=$(pool_state "$WORK/runs/pool-before-$rep.json")
		((up == INSTANCES)) && break
		sleep 0.1
	done
	((up == INSTANCES)) || die "ballast's pool app has $up backends up, not $INSTANCES, after 60 s: $(tail -5 "$logf")"
	remember_tree
	log "rep $rep: ballast (pid $BALLAST_PID) up, $INSTANCES gunicorn instances up"
}

run_rep() {
	local rep=$1 out="$WORK/runs/openloop-$rep.json" raw="$WORK/runs/requests-$rep.tsv"
	local t0 t1 code
	start_ballast "$rep"
	log "rep $rep: ${DURATION} s of load at $RATE req/s, restart at ${RESTART_AT} s"
	"$WORK/bin/openloop" -url "http://$PROXY_ADDR" -rate "$RATE" -duration "${DURATION}s" -warmup 0s \
		-shape deploy -seed $((SEED + rep - 1)) -label "deploy-$rep" -raw "$raw" >"$out" &
	LOAD_PID=$!
	sleep "$RESTART_AT"
	kill -0 "$LOAD_PID" 2>/dev/null || die "openloop ended early"
	t0=$(now_ms)
	# In the background, so that a signal to this script is handled at once.
	curl -sS -m 120 -X POST "http://$ADMIN_ADDR/api/v1/pools/app/restart" \
		-o "$WORK/runs/restart-$rep.body" -w '%{http_code}' >"$WORK/runs/restart-$rep.code" 2>"$WORK/runs/restart-$rep.err" &
	CURL_PID=$!
	wait "$CURL_PID" || true
	CURL_PID=""
	t1=$(now_ms)
	code=$(cat "$WORK/runs/restart-$rep.code" 2>/dev/null || true)
	log "rep $rep: restart answered ${code:-nothing} after $((t1 - t0)) ms: $(cat "$WORK/runs/restart-$rep.body" "$WORK/runs/restart-$rep.err" 2>/dev/null | tr '\n' ' ')"
	wait "$LOAD_PID" || die "openloop failed in rep $rep"
	LOAD_PID=""
	pool_state "$WORK/runs/pool-after-$rep.json" >/dev/null
	remember_tree
	stop_ballast
	local left
	left=$(gunicorns_left 15)
	if ((left != 0)); then
		kill_gunicorns_left
		die "rep $rep: $left gunicorn processes were left after ballast stopped"
	fi
	log "rep $rep: ballast stopped, no gunicorn left"
	printf 'rep=%s\nrestart_start_ms=%s\nrestart_end_ms=%s\nrestart_status=%s\ngunicorn_left=%s\n' \
		"$rep" "$t0" "$t1" "${code:-}" "$left" >"$WORK/runs/rep-$rep.env"
	REP_ARGS+=(--rep "rep=$rep,env=$WORK/runs/rep-$rep.env,openloop=$out,raw=$raw,before=$WORK/runs/pool-before-$rep.json,after=$WORK/runs/pool-after-$rep.json,restart_body=$WORK/runs/restart-$rep.body,log=$WORK/logs/ballast-$rep.log")
}

main() {
	check_tools
	local a p
	for a in "$PROXY_ADDR" "$ADMIN_ADDR"; do
		port_free "$a" || die "$a is in use"
	done
	p=$(our_gunicorns | head -5 | tr '\n' ' ')
	[[ -z "$p" ]] || die "gunicorn processes bound to 127.0.0.1:$PORT_LO-$PORT_HI already run (pids $p): stop them first"
	WORK=$(mktemp -d /tmp/ballast-pydeploy.XXXXXX)
	mkdir -p "$WORK"/{logs,runs,bin}
	build
	write_config
	REP_ARGS=()
	local started load_before rep
	started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	for ((rep = 1; rep <= REPS; rep++)); do
		run_rep "$rep"
	done
	mkdir -p "$RESULTS"
	"$PYTHON" bench/python/deploy_report.py --results "$RESULTS" \
		--meta started="$started" --meta finished="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		--meta commit="$COMMIT" --meta command="$COMMAND" \
		--meta nproc="$(nproc)" \
		--meta cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
		--meta kernel="$(uname -r)" \
		--meta loadavg_before="$load_before" --meta loadavg_after="$(cut -d' ' -f1-3 /proc/loadavg)" \
		--meta rate="$RATE" --meta duration="$DURATION" --meta restart_at="$RESTART_AT" --meta reps="$REPS" \
		--meta gunicorn="$("$GUNICORN" --version 2>&1 | sed 's/[^0-9.]//g')" \
		--meta config="$(cat "$WORK/ballast.yaml")" \
		"${REP_ARGS[@]}"
}

main "$@"
