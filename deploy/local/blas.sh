#!/usr/bin/env bash
# Prints the Go build tags for the CPU compute backend on stdout:
#   nothing      — OpenBLAS can be used through cgo (the fast path);
#   noopenblas   — build the pure-Go fallback instead.
# With --install it first tries to install libopenblas-dev when it is missing
# and this runs as root with apt-get (as on CI and fresh dev machines).
# Whatever it decides, it says so on stderr; it never fails the build.
set -u

probe() {
	[ "$(go env CGO_ENABLED 2>/dev/null)" = 1 ] || return 1
	local cc
	cc=$(go env CC 2>/dev/null)
	command -v "${cc%% *}" >/dev/null 2>&1 || return 1
	local dir
	dir=$(mktemp -d) || return 1
	printf '#include <cblas.h>\nint main(void){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1,&a,1,&b,1,0,&c,1);return c!=1;}\n' >"$dir/p.c"
	$cc "$dir/p.c" -o "$dir/p" -lopenblas >/dev/null 2>&1 && "$dir/p"
	local rc=$?
	rm -rf "$dir"
	return $rc
}

if probe; then
	exit 0
fi
if [ "${1:-}" = --install ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "blas: OpenBLAS not found; installing libopenblas-dev with apt-get (waits up to 5 min for another apt to finish) ..." >&2
	log=$(mktemp)
	# DPkg::Lock::Timeout: wait for the dpkg lock instead of failing at once
	# when another apt (unattended upgrades, a second make) holds it.
	apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
	if { "${apt[@]}" install libopenblas-dev pkg-config >"$log" 2>&1 ||
		{ "${apt[@]}" update >>"$log" 2>&1 && "${apt[@]}" install libopenblas-dev pkg-config >>"$log" 2>&1; }; } && probe; then
		echo "blas: libopenblas-dev installed; using OpenBLAS" >&2
		rm -f "$log"
		exit 0
	fi
	echo "blas: could not install libopenblas-dev; apt-get said:" >&2
	tail -n 12 "$log" | sed 's/^/blas:   /' >&2
	rm -f "$log"
fi
echo "blas: OpenBLAS (libopenblas-dev) or a C compiler is not available: building the pure-Go fallback (-tags noopenblas), which is slower. Install libopenblas-dev and gcc for the fast CPU backend." >&2
echo noopenblas
