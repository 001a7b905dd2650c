#!/usr/bin/env bash
# The CUDA backend on a GPU machine (H100/H200), in one go, in under 6
# minutes:
#
#   0. uses the prebuilt binaries of .gpu-bundle/bin when their SOURCES hash
#      matches this tree (bundle.sh makes them: no Go, modules or headers
#      needed here, and no build time); otherwise:
#   1. finds Go (PATH, /usr/local/go/bin, .gotoolchain/go/bin, or unpacks
#      .gotoolchain/go.tar.xz) and the modules (vendor/, or unpacks
#      .gpu-bundle/vendor.tar.xz and builds with GOFLAGS=-mod=vendor);
#   2. prints nvidia-smi and the driver;
#   3. regenerates the PTX when nvcc is there and kernels.cu changed since
#      it was committed (otherwise builds with the committed kernels/cuda/ptx)
#      and builds ffc and this benchmark with -tags cuda;
#   4. runs the GPU tests of kernels/cuda (TestGPU*: the float64 parity suite,
#      the cross-backend comparison with the CPU in FP32 and TF32; and the
#      kernel-name/PTX checks) and of trainers/engine (TestGPU*: the engine
#      against the CPU engine), each package's test binary in its folder
#   5. runs benchmarks/gpu: a full FFC trainer step for D = 512, B = 256,
#      Q = 10k, 100k, 1M, FP32 and TF32, one table (RESULTS.md).
#
#   bash benchmarks/gpu/run.sh            # everything
#   BENCH_ARGS="--q 1M --precision tf32" bash benchmarks/gpu/run.sh
#
# Without internet and without Go on the GPU machine, prepare on a machine
# with Go first: benchmarks/gpu/bundle.sh writes .gpu-bundle/ (vendored
# modules, CUDA headers) and .gotoolchain/go.tar.xz; carry both folders
# (git-ignored) with the tree. A plain copy of GOROOT (about 270 MiB) does
# NOT fit the 64 MiB transfer limit: the toolchain travels trimmed and
# xz-compressed (about 30 MiB), and this script unpacks it.
#
# Logs go to $OUT when it is set (else out/gpu/): run.log (all of it),
# nvidia-smi.txt, build.log, test.log, bench.log, RESULTS.md. Each part has
# a time limit (env: BUILD_TIMEOUT 120, TEST_TIMEOUT 100 for both test
# binaries together, BENCH_TIMEOUT 120 seconds); the exit status is that of
# the first part that failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
repo=$(pwd)
t0=$(date +%s)
logdir=${OUT:-$repo/out/gpu}
mkdir -p "$logdir"
exec > >(tee "$logdir/run.log") 2>&1
stamp() { echo "gpu: [$(($(date +%s) - t0))s] $*"; }
status=0
fail() {
	stamp "FAILED: $1"
	((status == 0)) && status=${2:-1}
}

BUILD_TIMEOUT=${BUILD_TIMEOUT:-120}
TEST_TIMEOUT=${TEST_TIMEOUT:-100}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-120}
BENCH_ARGS=${BENCH_ARGS:-}

GPU_TESTS='TestGPU|TestKernelNames|TestPTXFor'
ENGINE_GPU_TESTS='TestGPU'
# shellcheck source=benchmarks/gpu/srchash.sh
. benchmarks/gpu/srchash.sh
prebuilt=0
if [[ -x .gpu-bundle/bin/kernels-cuda.test && -x .gpu-bundle/bin/trainers-engine.test && -x .gpu-bundle/bin/gpu-bench ]]; then
	want=$(cat .gpu-bundle/bin/SOURCES 2>/dev/null) have=$(src_hash)
	if [[ $want == "$have" ]]; then
		prebuilt=1
		stamp "using the prebuilt binaries of .gpu-bundle/bin (sources $have)"
	else
		stamp "ignoring .gpu-bundle/bin: built from sources $want, the tree is $have (re-run benchmarks/gpu/bundle.sh)"
	fi
fi

# --------------------------------------------------------------------- Go --
unpack_xz() { # archive dir
	if command -v xz >/dev/null; then
		tar -C "$2" -xJf "$1"
	else
		python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
	fi
}
setup_go() {
gobin=
for d in "$(dirname "$(command -v go 2>/dev/null || echo /nonexistent/go)")" /usr/local/go/bin "$repo/.gotoolchain/go/bin"; do
	[[ -x $d/go ]] && {
		gobin=$d
		break
	}
done
if [[ -z $gobin && -f .gotoolchain/go.tar.xz ]]; then
	stamp "unpacking .gotoolchain/go.tar.xz"
	unpack_xz .gotoolchain/go.tar.xz .gotoolchain && gobin=$repo/.gotoolchain/go/bin
fi
if [[ -z $gobin ]]; then
	stamp "no Go: not on PATH, /usr/local/go/bin or .gotoolchain/go/bin, and no current .gpu-bundle/bin; run benchmarks/gpu/bundle.sh where Go is and carry .gpu-bundle (and .gotoolchain)"
	exit 2
fi
export PATH=$gobin:$PATH GOTOOLCHAIN=local
# The machine may be offline: never reach for a proxy or the checksum DB.
export GOPROXY=${GOPROXY:-off} GOSUMDB=${GOSUMDB:-off}
created_vendor=0
if [[ ! -d vendor && -f .gpu-bundle/vendor.tar.xz ]]; then
	stamp "unpacking .gpu-bundle/vendor.tar.xz into vendor/"
	unpack_xz .gpu-bundle/vendor.tar.xz . && created_vendor=1
fi
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if ((created_vendor)); then rm -rf "$repo/vendor"; fi
}
trap cleanup EXIT
if [[ -d vendor ]]; then
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=vendor"
fi
stamp "$(go version) (GOROOT $(go env GOROOT)); GOFLAGS=${GOFLAGS:-}"
}
((prebuilt)) || setup_go

# ------------------------------------------------------------ CUDA, cgo --
# Headers for cgo: the toolkit's when installed (/usr or /usr/local/cuda),
# else the bundled ones. Only libcuda (the driver) is linked, through an
# unversioned libcuda.so made here when only libcuda.so.1 exists; cuBLAS is
# opened with dlopen at start (libcublas.so.N of CUDA 11-13).
if ((!prebuilt)); then
eval "$(deploy/local/cuda.sh env 2>/dev/null)" || true
# shellcheck disable=SC2086 # CGO_CFLAGS holds several flags
if ! printf '#include <cuda.h>\n#include <cublas_v2.h>\n' | ${CC:-gcc} ${CGO_CFLAGS:-} -E -x c - >/dev/null 2>&1; then
	if [[ -d .gpu-bundle/cuda-include ]]; then
		stamp "no CUDA headers on this machine: using .gpu-bundle/cuda-include"
		export CGO_CFLAGS="-I$repo/.gpu-bundle/cuda-include ${CGO_CFLAGS:-}"
	else
		fail "cuda.h / cublas_v2.h not found and no .gpu-bundle/cuda-include (run benchmarks/gpu/bundle.sh)"
	fi
fi
fi
linkdir=$(mktemp -d)
libdirs=(/usr/lib/x86_64-linux-gnu /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/local/cuda/lib64
	/usr/local/cuda/targets/x86_64-linux/lib /usr/lib64 /lib/x86_64-linux-gnu)
for lib in cuda cublas; do
	found=
	for d in "${libdirs[@]}"; do
		for f in "$d/lib$lib.so" "$d/lib$lib".so.[0-9]*; do
			[[ -e $f ]] || continue
			found=$f
			if [[ $lib == cuda && $f != *.so ]]; then
				ln -sf "$f" "$linkdir/libcuda.so"
				export CGO_LDFLAGS="-L$linkdir ${CGO_LDFLAGS:-}"
			fi
			case :${LD_LIBRARY_PATH:-}: in
			*:"$d":*) ;;
			*) export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
			esac
			break 2
		done
	done
	if [[ -z $found && $lib == cublas && -z ${FFC_CUBLAS:-} ]]; then
		# Python wheels (nvidia-cublas) keep it under site-packages.
		found=$(find /opt /usr/local /usr/lib/python3* -maxdepth 9 -name 'libcublas.so*' 2>/dev/null | sort -r | head -1)
		[[ -n $found ]] && export FFC_CUBLAS=$found
	fi
	stamp "lib$lib: ${found:-NOT FOUND}"
done

# ------------------------------------------------------------ the machine --
stamp "nvidia-smi"
{
	timeout 30 nvidia-smi || echo "nvidia-smi failed"
	timeout 30 nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,clocks.max.sm,power.limit --format=csv || true
	cat /proc/driver/nvidia/version 2>/dev/null || true
	echo "host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
} 2>&1 | tee "$logdir/nvidia-smi.txt"

# ------------------------------------------------------------------ build --
bindir=$(mktemp -d)
if ((prebuilt)); then
	cp .gpu-bundle/bin/kernels-cuda.test .gpu-bundle/bin/trainers-engine.test .gpu-bundle/bin/gpu-bench "$bindir"/
	build_rc=0
else
	stamp "build (-tags cuda, limit ${BUILD_TIMEOUT}s)"
	{
		if command -v "${NVCC:-nvcc}" >/dev/null 2>&1; then
			# Regenerated only when kernels.cu no longer matches them (nvcc is
			# not deterministic: an equivalent PTX is left as committed).
			deploy/local/cuda.sh ptx-check || make --no-print-directory ptx
		else
			echo "no nvcc: building with the committed PTX in kernels/cuda/ptx"
		fi
		timeout "$BUILD_TIMEOUT" bash -c "go build -tags cuda -o '$bindir/gpu-bench' ./benchmarks/gpu &&
			go test -tags cuda -c -o '$bindir/kernels-cuda.test' ./kernels/cuda &&
			go test -tags cuda -c -o '$bindir/trainers-engine.test' ./trainers/engine"
	} 2>&1 | tee "$logdir/build.log"
	build_rc=${PIPESTATUS[0]}
	((build_rc == 0)) || fail "build (exit $build_rc; 124: timed out; a stale vendor/? re-run bundle.sh)" "$build_rc"
fi

# ------------------------------------------------------------------ tests --
if ((build_rc == 0)); then
	: >"$logdir/test.log"
	tests_t0=$(date +%s)
	# gpu_tests DIR BINARY REGEXP runs one package's test binary in its
	# folder, appending to test.log, within what is left of TEST_TIMEOUT
	# (at least 10 seconds).
	gpu_tests() {
		local dir=$1 bin=$2 run=$3 left rc
		left=$((TEST_TIMEOUT - ($(date +%s) - tests_t0)))
		((left >= 10)) || left=10
		stamp "$dir GPU tests -run '$run' (limit ${left}s)"
		(cd "$dir" && timeout -k 10 "$((left + 5))" "$bindir/$bin" -test.run "$run" \
			-test.count=1 -test.v -test.timeout "${left}s") 2>&1 | tee -a "$logdir/test.log"
		rc=${PIPESTATUS[0]}
		((rc == 0)) || fail "$dir tests (exit $rc)" "$rc"
	}
	gpu_tests kernels/cuda kernels-cuda.test "$GPU_TESTS"
	gpu_tests trainers/engine trainers-engine.test "$ENGINE_GPU_TESTS"
	stamp "tests: $(grep -c '^--- PASS' "$logdir/test.log") passed, $(grep -c '^--- FAIL' "$logdir/test.log") failed, $(grep -c '^--- SKIP' "$logdir/test.log") skipped (top level)"

	# --------------------------------------------------------- benchmark --
	stamp "benchmarks/gpu (limit ${BENCH_TIMEOUT}s)"
	# shellcheck disable=SC2086
	timeout -k 10 "$BENCH_TIMEOUT" "$bindir/gpu-bench" --budget "$((BENCH_TIMEOUT - 30))s" --step-budget 8s --steps 15 \
		--out "$logdir/RESULTS.md" $BENCH_ARGS 2>&1 | tee "$logdir/bench.log"
	rc=${PIPESTATUS[0]}
	((rc == 0)) || fail "benchmark (exit $rc; 124: timed out)" "$rc"
fi
rm -rf "$bindir" "$linkdir"
stamp "done, exit status $status; logs in $logdir"
exit "$status"
