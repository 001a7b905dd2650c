#!/bin/sh
# Regenerates internal/onnx/onnxpb from internal/onnx/proto/onnx/onnx.proto,
# the ONNX IR definition copied unchanged from the onnx 1.23.2 wheel on PyPI
# (onnx/onnx.proto; Apache-2.0, see proto/LICENSE).
#
#   go generate ./internal/onnx/...   (runs this script)
#   internal/onnx/gen.sh [OUT_ROOT]   (OUT_ROOT defaults to the repository
#                                      root; TestGeneratedUpToDate passes a
#                                      temp dir)
#
# Needs protoc (Debian package protobuf-compiler) and Go. protoc-gen-go is
# installed at the pinned version below (the same as schemas/gen.sh) into a
# cache directory, never onto PATH, so the output does not depend on what
# else is installed.
set -eu

PROTOC_GEN_GO_VERSION=v1.36.12

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
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
cd "$here/proto"
# The .proto has no go_package option (it is ONNX's file, kept as is): the
# M flag names the Go package. -I proto and the relative path keep the
# generated file independent of where the repository is checked out.
protoc -I . \
	--plugin="protoc-gen-go=$bin/protoc-gen-go" \
	--go_out="$out" \
	--go_opt=module=github.com/ffc-stream/ffc \
	--go_opt=Monnx/onnx.proto=github.com/ffc-stream/ffc/internal/onnx/onnxpb \
	onnx/onnx.proto
