#!/usr/bin/env bash
# Runs ballast's whole test suite: formatting, go vet, staticcheck, and every
# test with the race detector. Installs what the tests need first (Debian
# packages, when run as root and something is missing; Go modules always).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: python3 (demo backends), curl (demo script), chromium (the
# dashboard's browser tests in internal/admin, which skip without it), redis-server and redis-tools
# (TCP mode in front of a real Redis, internal/server/redis_test.go, which skips without them),
# gunicorn, python3-flask and python3-uvicorn (launched app servers: internal/server/launch_test.go,
# cmd/ballast/e2e_launch_test.go, the examples), iproute2 and keepalived (VRRP in network namespaces
# and against keepalived: internal/cluster/vrrp, cmd/ballast/e2e_vrrp_linux_test.go, as root),
# etcd-server (the shared store: internal/cluster/etcd).
need=()
for pkg in gunicorn python3-flask python3-uvicorn iproute2 keepalived etcd-server; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
done
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || need+=(chromium)
if ((${#need[@]})); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "installing: ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	else
		echo "missing: ${need[*]} (install them, or run as root to let this script do it)" >&2
		exit 1
	fi
fi

go mod download

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n "$unformatted" ]]; then
	echo "not gofmt-ed:" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "== go vet"
go vet ./...
echo "== staticcheck"
go tool staticcheck ./...
echo "== go test -race"
go test -race -count=1 -timeout 20m ./...
echo "== benchmarks, briefly (a smoke check that they run; figures are not judged here)"
go test -run '^$' -bench . -benchtime 200x ./internal/... >/dev/null
echo "== go test -race ./internal/server (engine net_http)"
BALLAST_TEST_ENGINE=net_http go test -race -count=1 -timeout 10m ./internal/server/
echo "== fuzz, briefly (5 s a target; a crasher lands in the package's testdata/fuzz)"
fuzz_targets=(
	internal/h1:FuzzParseRequest internal/h1:FuzzChunkedReader internal/h1:FuzzParseResponse
	internal/config:FuzzParse internal/config:FuzzParseRanges
	internal/accesslog:FuzzAppendEntry
	internal/balancer:FuzzHashOn internal/balancer:FuzzParseHashOn internal/balancer:FuzzStickyCookie
	internal/admin:FuzzAddBackend
	internal/proxy:FuzzRemoveHopHeaders internal/proxy:FuzzPrepareRequestHeader internal/proxy:FuzzAppendRequestHead
	cmd/ballast:FuzzParseListenFDs
	internal/cluster/vrrp:FuzzDecode internal/cluster/etcd:FuzzDecode
)
for target in "${fuzz_targets[@]}"; do
	if ! out=$(go test -run='^$' -fuzz="^${target#*:}\$" -fuzztime=5s "./${target%%:*}/" 2>&1); then
		# Go 1.26's fuzz coordinator may report its own -fuzztime deadline as
		# a failure (go.dev/issue/75804, fixed in Go 1.27): that, with no
		# failing input written, is not a finding.
		if [[ $out == *"context deadline exceeded"* && $out != *"Failing input written"* ]]; then
			echo "fuzz ${target}: stopped by the go.dev/issue/75804 race, no failing input" >&2
			continue
		fi
		echo "$out" >&2
		exit 1
	fi
done
