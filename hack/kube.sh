#!/usr/bin/env bash
# hack/kube.sh: a real Kubernetes control plane (etcd + kube-apiserver) and the kn CLI, built from
# the Go module proxy, for the controller's tests and for humans/Tilt.
#
# Why a script and not `go install`: k8s.io/kubernetes' go.mod maps every staging module
# (k8s.io/api, k8s.io/apiserver, ...) to ./staging with a `replace` line and requires them at the fake
# version v0.0.0; `go install pkg@version` refuses modules with replace lines. So the build uses a
# throw-away wrapper module (.cache/k8s-build) whose replace lines point each staging module at its
# published v0.Y.Z twin; the list is derived from the go.mod the proxy serves, not hand-copied.
#
#   bash hack/kube.sh build              build missing binaries into .cache/bin (idempotent, fast when cached)
#   bash hack/kube.sh start [--dir D]    start etcd + kube-apiserver, apply our CRDs, print the kubeconfig path
#   bash hack/kube.sh stop  [--dir D]    stop what `start` started (by the pids it recorded)
#   bash hack/kube.sh env                print the paths of the binaries (KEY=VALUE lines)
#
# The pytest fixture (test/fixtures/kube.py) does not call `start`: it runs the same binaries itself
# on free ports so that test runs never collide with a developer's cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
K8S_VERSION=1.36.3   # k8s.io/kubernetes tag; its staging twins are v0.36.3 (both served by the proxy)
STAGING_VERSION=0.36.3
KN_VERSION=v0.42.0   # last knative.dev/client tag without replace lines (newer ones need a wrapper)

log() { printf '[kube.sh] %s\n' "$*" >&2; }

# The machine's default GOFLAGS (-buildvcs=false) is kept; -mod=mod lets `go build` update go.sum.
go_env() {
  export GOFLAGS="-mod=mod -buildvcs=false"
  # The go.mods here all name Go <= 1.26; never let a dependency switch toolchains behind our back.
  export GOTOOLCHAIN=local
}

kubectl_bin() {
  if [[ -x "$BIN/kubectl" ]]; then echo "$BIN/kubectl"; return; fi
  command -v kubectl || true
}

# The binaries still missing from .cache/bin, in build order (empty: nothing to do).
missing_k8s() {
  local b
  for b in kube-apiserver etcd; do [[ -x "$BIN/$b" ]] || echo "$b"; done
  [[ -z "$(kubectl_bin)" ]] && echo kubectl
  return 0
}

build_k8s() {
  local want
  want=$(missing_k8s | paste -sd ' ' -)
  [[ -z $want ]] && return 0

  local started=$SECONDS w="$CACHE/k8s-build"
  log "building $want (v$K8S_VERSION) in $w (cold: many minutes on 2 cores)"
  go_env
  rm -rf "$w" && mkdir -p "$w" "$BIN"
  (
    cd "$w"
    go mod init local/k8sbins >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    # Every `k8s.io/x => ./staging/src/k8s.io/x` line becomes `k8s.io/x => k8s.io/x@v0.Y.Z`.
    local m args=()
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\1#p' "$gomod"); do
      args+=("-replace=$m=$m@v$STAGING_VERSION")
    done
    [[ ${#args[@]} -gt 10 ]] || { log "found only ${#args[@]} staging replaces in $gomod"; exit 1; }
    go mod edit "${args[@]}"
    go get "k8s.io/kubernetes@v$K8S_VERSION"
    # Build etcd at the version Kubernetes itself requires (a bare `go get` would take the newest).
    local ev
    ev=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
    log "etcd server version required by kubernetes: $ev"
    go get "go.etcd.io/etcd/server/v3@$ev"
    # Stamp the version, else the server reports v0.0.0 and clients warn about skew (etcd does
    # not link k8s.io/component-base, so the -X flags are no-ops for it).
    local minor=${K8S_VERSION#1.}
    minor=${minor%%.*}
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION"
    ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    # One `go build` for all of them, not one per binary: Go schedules the packages of every
    # target on all cores and compiles the ones they share (grpc, protobuf, etcd's client) once.
    local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3)
    [[ $want == *kubectl* ]] && pkgs+=(k8s.io/kubernetes/cmd/kubectl)
    rm -rf out && mkdir out
    go build -trimpath -ldflags "$ld" -o out/ "${pkgs[@]}"
    mv out/server out/etcd  # go names go.etcd.io/etcd/server/v3's binary after "server"
    local b
    for b in $want; do mv "out/$b" "$BIN/$b"; done
  )
  log "$want built in $((SECONDS - started)) s"
}

build_kn() {
  [[ -x "$BIN/kn" ]] && return 0
  local started=$SECONDS w="$CACHE/kn-build"
  log "building kn $KN_VERSION in $w"
  go_env
  rm -rf "$w" && mkdir -p "$w" "$BIN"
  (
    # Not `go install kn@version`: that also asks the proxy for the module's version list (to look
    # for a deprecation notice), which this proxy refuses for knative.dev/client (403). `go get` of
    # an exact version inside a wrapper module does not need the list.
    cd "$w"
    go mod init local/knbin >/dev/null 2>&1
    # kn v0.42.0 requires knative.dev/client-pkg at a pseudo-version the proxy serves but whose
    # checksum-database entry it does not (404). Skip the sumdb for that one module only; go.sum
    # still pins what was downloaded.
    export GONOSUMDB=knative.dev/client-pkg
    go get "knative.dev/client@$KN_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$BIN/kn.tmp" knative.dev/client/cmd/kn
    mv "$BIN/kn.tmp" "$BIN/kn"
  )
  log "kn built in $((SECONDS - started)) s"
}

cmd_build() {
  mkdir -p "$CACHE"
  # Two `make test`s at once must not build into the same wrapper directories.
  exec 9>"$CACHE/kube-build.lock"
  flock -w 3600 9 || { log "another build holds $CACHE/kube-build.lock"; exit 1; }
  # Kubernetes and kn side by side: while one waits on the module proxy or links (one core) the
  # other compiles. Both use Go's default build and module caches, which are safe to share and
  # make a rebuild after `rm .cache/bin/*` take a fraction of the cold build.
  local started=$SECONDS k8s kn failed=0
  build_k8s &
  k8s=$!
  build_kn &
  kn=$!
  wait "$k8s" || { log "kube-apiserver/etcd build failed"; failed=1; }
  wait "$kn" || { log "kn build failed"; failed=1; }
  [[ $failed == 0 ]] || exit 1
  (( SECONDS - started < 2 )) || log "build finished in $((SECONDS - started)) s"
}

cmd_env() {
  echo "KUBE_APISERVER=$BIN/kube-apiserver"
  echo "ETCD=$BIN/etcd"
  echo "KUBECTL=$(kubectl_bin)"
  echo "KN=$BIN/kn"
}

# start/stop live in Python (hack/kube/controlplane.py, standard library only) so that the pytest
# fixture and humans run the very same flags. `start` is idempotent: a running plane is reused.
python_bin() {
  if [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"; else command -v python3; fi
}
cmd_start() {
  cmd_build
  "$(python_bin)" "$ROOT/hack/kube/controlplane.py" start "$@"
}
cmd_stop() {
  "$(python_bin)" "$ROOT/hack/kube/controlplane.py" stop "$@"
}

main() {
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    build) cmd_build ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    env) cmd_env ;;
    *) sed -n '2,17p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
  esac
}

main "$@"
