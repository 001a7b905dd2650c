#!/usr/bin/env bash
# Prepares, on a machine with Go and the module cache (this one), what
# benchmarks/gpu/run.sh needs on a GPU machine that has no internet and
# maybe no Go:
#
#   .gpu-bundle/bin/               prebuilt binaries (-tags "cuda noopenblas", stripped):
#                                  the kernels/cuda and trainers/engine test binaries and
#                                  gpu-bench. They link only libc, libstdc++ and libcuda
#                                  (cuBLAS is opened at run time), so the GPU machine needs
#                                  no Go, no modules and no headers; run.sh uses them when
#                                  .gpu-bundle/bin/SOURCES matches the tree's sources
#   .gpu-bundle/vendor.tar.xz      `go mod vendor` of this checkout, compressed
#                                  (run.sh unpacks it to vendor/ and builds with
#                                  GOFLAGS=-mod=vendor; about 35 MiB raw, 4 MiB xz)
#   .gpu-bundle/cuda-include/      cuda.h, cublas_v2.h and the CUDA headers they
#                                  include (used only where the GPU machine has none)
#   .gotoolchain/go.tar.xz         the Go toolchain of this machine, trimmed to what
#                                  `go build` and `go test` need (bin/go, compile, link,
#                                  asm, cgo, vet, src without tests and testdata)
#
# The transfer limit to the GPU machine is 64 MiB for the whole working tree.
# A plain copy of $(go env GOROOT) into .gotoolchain/go does NOT fit (Go 1.26:
# about 270 MiB; trimmed still about 160 MiB), so the toolchain travels
# trimmed and xz-compressed (about 30 MiB) and run.sh unpacks it into
# .gotoolchain/go when no go is on the GPU machine. Vendor + toolchain +
# the tree come to about 36 MiB. The script prints the sizes and the total.
#
#   benchmarks/gpu/bundle.sh [--no-toolchain]
#
# Both folders are git-ignored; carry them: carry [".gpu-bundle", ".gotoolchain"].
# Re-run after go.mod changes (-mod=vendor refuses a stale vendor folder).
# The toolchain archive is rebuilt only when the Go version changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
t0=$(date +%s)
log() { echo "bundle: [$(($(date +%s) - t0))s] $*"; }
die() {
	echo "bundle: error: $*" >&2
	exit 1
}
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
size() { du -sb "$@" | awk '{s += $1} END {print s + 0}'; }

toolchain=1
case ${1:-} in
--no-toolchain) toolchain=0 ;;
"") ;;
-h | --help)
	sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*) die "unknown argument $1 (--no-toolchain)" ;;
esac
command -v go >/dev/null || die "go is not on PATH"
command -v xz >/dev/null || die "xz is not installed (apt-get install xz-utils)"
limit=$((64 << 20))

mkdir -p .gpu-bundle .gotoolchain

log "prebuilt binaries → .gpu-bundle/bin (-tags \"cuda noopenblas\")"
# shellcheck source=benchmarks/gpu/srchash.sh
. benchmarks/gpu/srchash.sh
rm -rf .gpu-bundle/bin
mkdir -p .gpu-bundle/bin
go test -tags "cuda noopenblas" -ldflags "-s -w" -c -o .gpu-bundle/bin/kernels-cuda.test ./kernels/cuda
go test -tags "cuda noopenblas" -ldflags "-s -w" -c -o .gpu-bundle/bin/trainers-engine.test ./trainers/engine
go build -tags "cuda noopenblas" -ldflags "-s -w" -o .gpu-bundle/bin/gpu-bench ./benchmarks/gpu
src_hash >.gpu-bundle/bin/SOURCES
log "binaries: $(mib "$(size .gpu-bundle/bin)"), sources $(cat .gpu-bundle/bin/SOURCES); dynamic libraries: $(ldd .gpu-bundle/bin/kernels-cuda.test | awk '{print $1}' | tr '\n' ' ')"

log "go mod vendor → .gpu-bundle/vendor.tar.xz"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOFLAGS=-mod=mod go mod vendor -o "$tmp/vendor"
raw=$(size "$tmp/vendor")
tar -C "$tmp" -cf - vendor | xz -T0 -6 >.gpu-bundle/vendor.tar.xz.new
mv .gpu-bundle/vendor.tar.xz.new .gpu-bundle/vendor.tar.xz
log "vendor: $(grep -c '^# ' "$tmp/vendor/modules.txt") modules, $(mib "$raw") raw, $(mib "$(size .gpu-bundle/vendor.tar.xz)") compressed"

log "CUDA headers → .gpu-bundle/cuda-include"
rm -rf .gpu-bundle/cuda-include
mkdir -p .gpu-bundle/cuda-include
printf '#include <cuda.h>\n#include <cublas_v2.h>\n' >"$tmp/h.c"
cflags=$(bash -c 'eval "$(deploy/local/cuda.sh env 2>/dev/null)"; echo "${CGO_CFLAGS:-}"')
# shellcheck disable=SC2086
if deps=$(${CC:-gcc} $cflags -M "$tmp/h.c" 2>/dev/null); then
	n=0
	# shellcheck disable=SC1003,SC2020
	for f in $(tr ' \\' '\n\n' <<<"$deps" | grep '^/' | sort -u); do
		# Only the CUDA toolkit's headers: the C library's come from the GPU
		# machine's own compiler.
		case $f in
		*/x86_64-linux-gnu/* | /usr/lib/gcc/*) continue ;;
		esac
		if command -v dpkg >/dev/null && pkg=$(dpkg -S "$f" 2>/dev/null); then
			[[ $pkg == nvidia-cuda-dev:* || $pkg == *cuda* ]] || continue
		elif [[ $f != */cuda* && $f != */include/cu* && $f != */include/*_types.h ]]; then
			continue
		fi
		cp "$f" .gpu-bundle/cuda-include/
		n=$((n + 1))
	done
	log "CUDA headers: $n files, $(mib "$(size .gpu-bundle/cuda-include)")"
else
	log "CUDA headers: cuda.h or cublas_v2.h not found here (deploy/local/cuda.sh install): not bundled"
fi

if ((toolchain)); then
	goroot=$(go env GOROOT)
	version=$(go env GOVERSION)
	full=$(size "$goroot")
	log "Go toolchain $version at $goroot: $(mib "$full") as a plain copy: $( ((full < limit)) && echo fits || echo 'does NOT fit') the 64 MiB transfer limit"
	if [[ -f .gotoolchain/go.tar.xz && $(cat .gotoolchain/VERSION 2>/dev/null) == "$version" ]]; then
		log "toolchain: .gotoolchain/go.tar.xz is already $version"
	else
		log "toolchain: trimming and compressing (about a minute) → .gotoolchain/go.tar.xz"
		tools=()
		for t in asm cgo compile link vet; do
			tools+=("pkg/tool/$(go env GOOS)_$(go env GOARCH)/$t")
		done
		files=(VERSION bin/go "${tools[@]}" pkg/include src)
		[[ -f $goroot/go.env ]] && files+=(go.env)
		raw=$(tar -C "$goroot" -cf - --exclude=testdata --exclude='*_test.go' "${files[@]}" | wc -c)
		tar -C "$goroot" -cf - --exclude=testdata --exclude='*_test.go' --transform 's,^,go/,' "${files[@]}" |
			xz -T0 -6 >.gotoolchain/go.tar.xz.new
		mv .gotoolchain/go.tar.xz.new .gotoolchain/go.tar.xz
		echo "$version" >.gotoolchain/VERSION
		log "toolchain: trimmed $(mib "$raw") raw, $(mib "$(size .gotoolchain/go.tar.xz)") compressed"
	fi
	# run.sh unpacks into .gotoolchain/go: never carry an unpacked copy.
	rm -rf .gotoolchain/go
fi

tree=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null || true) | awk 'END {print $1 + 0}')
bundle=$(size .gpu-bundle .gotoolchain)
total=$((tree + bundle))
log "tree (tracked + untracked, not ignored) $(mib "$tree") + .gpu-bundle and .gotoolchain $(mib "$bundle") = $(mib "$total") of the 64 MiB limit: $( ((total < limit)) && echo fits || echo 'DOES NOT FIT')"
log "carry: [\".gpu-bundle\", \".gotoolchain\"]; on the GPU machine: bash benchmarks/gpu/run.sh"
((total < limit)) || exit 1
