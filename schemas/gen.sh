#!/bin/sh
# Regenerates schemas/ffcpb from schemas/ffc/v1/*.proto.
#
#   go generate ./schemas/...      (runs this script)
#   schemas/gen.sh [OUT_ROOT]      (OUT_ROOT defaults to the repository root;
#                                   TestGeneratedUpToDate passes a temp dir)
#
# Needs protoc (Debian package protobuf-compiler) and Go. protoc-gen-go is
# installed at the pinned version below into a cache directory, never onto
# PATH, so the output does not depend on what else is installed.
set -eu

PROTOC_GEN_GO_VERSION=v1.36.12

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root}

command -v protoc >/dev/null 2>&1 || {
	echo "gen.sh: protoc not found; install it (Debian: apt-get install protobuf-compiler)" >&2
	exit 1
}

cache=${FFC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ffc}
bin="$cache/tools/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
if [ ! -x "$bin/protoc-gen-go" ]; then
	mkdir -p "$bin"
	GOBIN="$bin" GOFLAGS= go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi

mkdir -p "$out"
cd "$here"
# -I schemas and relative proto paths keep the generated file independent of
# where the repository is checked out.
protoc -I . \
	--plugin="protoc-gen-go=$bin/protoc-gen-go" \
	--go_out="$out" \
	--go_opt=module=github.com/ffc-stream/ffc \
	ffc/v1/*.proto
