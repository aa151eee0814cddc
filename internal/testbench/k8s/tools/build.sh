#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok, kubectl for the benchmark) from the Go module proxy into $1, once: the binaries are
# cached by version and later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${1:?usage: build.sh OUTDIR}
V=v1.37.2
have=1
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
  [ -x "$OUT/$b" ] || have=0
done
[ $have = 1 ] && exit 0
mkdir -p "$OUT"
LD="-s -w -X k8s.io/component-base/version.gitVersion=$V -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean"
go build -trimpath -ldflags="$LD" -o "$OUT/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl sigs.k8s.io/kwok/cmd/kwok
go build -trimpath -ldflags="-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
