#!/usr/bin/env bash
# Builds the binaries of a real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) from the Go module proxy into bin/.
# setup-envtest's downloads are unreachable here, so the test fleet builds its own.
# Each build happens in a throwaway module outside the project tree, so the
# kubernetes dependency graph never touches fleetmesh's go.mod. Idempotent: a
# binary that already reports the pinned version is not rebuilt.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.5}"
STAGING_VERSION="v0${KUBE_VERSION#v1}"      # v1.36.5 -> v0.36.5
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
WORK="${FLEETMESH_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetmesh-build}"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$BIN" "$WORK"

log() { echo "build-kube-binaries: $*" >&2; }

# install_atomically SRC NAME: rename into place so a half-written binary is never seen.
install_atomically() { mv -f "$1" "$BIN/$2"; }

kube_wanted=()
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  if [ -x "$BIN/$b" ] && "$BIN/$b" --version 2>/dev/null | grep -qx "Kubernetes $KUBE_VERSION"; then
    log "$b $KUBE_VERSION present"
  else
    kube_wanted+=("$b")
  fi
done

if [ "${#kube_wanted[@]}" -gt 0 ]; then
  mod="$WORK/kubernetes-$KUBE_VERSION"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.mod" ] || ! grep -q "k8s.io/kubernetes $KUBE_VERSION" "$mod/go.mod"; then
    log "preparing module in $mod"
    rm -f "$mod/go.mod" "$mod/go.sum"
    (cd "$mod" && go mod init fleetmesh.local/kube-build >/dev/null 2>&1)
    kmod="$(cd "$mod" && go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$KUBE_VERSION")"
    # Every module kubernetes resolves from ./staging is published at the matching v0 version.
    {
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      awk '/=> \.\/staging\/src\// {print "replace " $1 " => " $1 " '"$STAGING_VERSION"'"}' "$kmod"
    } >>"$mod/go.mod"
    cat >"$mod/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF
    (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true)
  fi
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=$(echo "$KUBE_VERSION" | cut -d. -f1 | tr -d v)"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  for b in "${kube_wanted[@]}"; do
    log "building $b $KUBE_VERSION (minutes on a cold cache)"
    (cd "$mod" && go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
      -o "$BIN/.$b.tmp" "k8s.io/kubernetes/cmd/$b")
    install_atomically "$BIN/.$b.tmp" "$b"
  done
fi

if [ -x "$BIN/etcd" ] && "$BIN/etcd" --version 2>/dev/null | grep -q "etcd Version: ${ETCD_VERSION#v}"; then
  log "etcd $ETCD_VERSION present"
else
  mod="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.mod" ]; then
    (cd "$mod" && go mod init fleetmesh.local/etcd-build >/dev/null 2>&1 &&
      go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1)
  fi
  log "building etcd $ETCD_VERSION"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$BIN/.etcd.tmp" go.etcd.io/etcd/server/v3)
  install_atomically "$BIN/.etcd.tmp" etcd
fi
