#!/usr/bin/env bash
# Installs the linters `make lint` runs, at pinned versions, into .bin/ (git-ignored):
#
#   golangci-lint  (.golangci.yml)               github.com/golangci/golangci-lint/v2
#   workflowcheck  (workflowcheck.config.yaml)    go.temporal.io/sdk/contrib/tools/workflowcheck
#
# Each is built from source with `go install module@version` and the Go on PATH: golangci-lint
# must be built by a Go at least as new as go.mod's `go` line, so a prebuilt binary would not
# do. Only the Go module proxy is used. A tool is rebuilt when its version or the Go version
# changes (the stamp beside it says which it is). The first build of golangci-lint takes a few
# minutes; later runs take no time.
set -euo pipefail
cd "$(dirname "$0")/.."

GOLANGCI_LINT_VERSION=v2.15.0
WORKFLOWCHECK_VERSION=v0.6.0

bin="$PWD/.bin"
mkdir -p "$bin"
gover="$(go env GOVERSION)"

ensure() {
  local name=$1 pkg=$2 version=$3
  local stamp="$bin/.$name.stamp" want="$pkg@$version $gover"
  if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "ensure-lint-tools: go install $pkg@$version ($gover)" >&2
  rm -f "$stamp"
  # GOTOOLCHAIN=local: build with this Go or fail, never download another toolchain.
  GOBIN="$bin" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go install "$pkg@$version"
  echo "$want" >"$stamp"
}

ensure golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION"
ensure workflowcheck go.temporal.io/sdk/contrib/tools/workflowcheck "$WORKFLOWCHECK_VERSION"
