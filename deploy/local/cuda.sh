#!/usr/bin/env bash
# Debian's CUDA toolkit for building the CUDA backend (kernels/cuda, build
# tag cuda): nvcc to generate the PTX, the CUDA and cuBLAS headers and
# libraries for cgo. Building needs no GPU; running a cuda-tagged binary does
# (gorgonia.org/cu exits in its init without one).
#
#   deploy/local/cuda.sh install   install nvidia-cuda-toolkit and nvidia-cuda-dev
#                                  (--no-install-recommends) when missing
#   deploy/local/cuda.sh check     nvcc compiles PTX for compute_80 and compute_90,
#                                  headers and libraries are there; prints versions
#   deploy/local/cuda.sh env       print 'export ...' lines for: eval "$(deploy/local/cuda.sh env)"
#   deploy/local/cuda.sh ptx-check the committed kernels/cuda/ptx match what nvcc makes of
#                                  kernels/cuda/kernels.cu now (make cuda-check runs it)
#
# install is idempotent and needs root and apt-get (Debian 12 bookworm or
# later). The toolkit is in Debian's contrib and non-free components: when no
# apt source provides it, install writes /etc/apt/sources.list.d/ffc-cuda.sources
# (contrib non-free of <codename> and <codename>-updates, signed by the
# Debian archive keyring) and runs apt-get update. The downloaded .debs (about
# 1.7 GB) are kept in $FFC_CACHE_DIR/apt-cuda (default ~/.cache/ffc/apt-cuda)
# so that the next install on a fresh machine with the same cache folder does
# not download them again; the system's own apt cache is not used.
#
# Environment:
#   FFC_CACHE_DIR        cache root (default ~/.cache/ffc)
#   FFC_CUDA_PACKAGES    packages to install (default "nvidia-cuda-toolkit nvidia-cuda-dev")
#   NVCC                 nvcc to use (default: nvcc on PATH, then /usr/local/cuda/bin/nvcc)
#   NVCCFLAGS, PTX_ARCHS ptx-check: the flags and architectures of `make ptx`
#
# ptx-check compiles into a temporary folder and leaves the tree alone.
# nvcc 11.8 is not deterministic on kernels.cu: about one run in four
# places an instruction elsewhere (same instructions, another order), so a
# file matches when it is identical or has the same lines in another order,
# and each architecture gets up to 4 compilations to match.
set -euo pipefail

CACHE_DIR=${FFC_CACHE_DIR:-${HOME:?HOME is not set}/.cache/ffc}
APT_CACHE=$CACHE_DIR/apt-cuda
read -r -a PACKAGES <<<"${FFC_CUDA_PACKAGES:-nvidia-cuda-toolkit nvidia-cuda-dev}"
SOURCES_FILE=/etc/apt/sources.list.d/ffc-cuda.sources
t0=$(date +%s)

log() { printf 'cuda: %s\n' "$*"; }
die() {
	printf 'cuda: error: %s\n' "$*" >&2
	exit 1
}
took() { log "$1 ($(($(date +%s) - t0)) s)"; }

usage() {
	sed -n '2,35p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

nvcc_bin() {
	if [[ -n ${NVCC:-} ]]; then
		echo "$NVCC"
	elif command -v nvcc >/dev/null 2>&1; then
		command -v nvcc
	elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
		echo /usr/local/cuda/bin/nvcc
	else
		return 1
	fi
}

installed() {
	local p
	for p in "${PACKAGES[@]}"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || return 1
	done
}

# has_candidate: apt knows a version of every package to install.
has_candidate() {
	local p c
	for p in "${PACKAGES[@]}"; do
		c=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
		[[ -n $c && $c != "(none)" ]] || return 1
	done
}

# add_sources writes the contrib/non-free sources file unless it exists.
add_sources() {
	[[ -e $SOURCES_FILE ]] && return 0
	local codename
	# shellcheck disable=SC1091
	codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	[[ -n $codename ]] || die "cannot tell the Debian release (no VERSION_CODENAME in /etc/os-release); add contrib and non-free to the apt sources by hand"
	local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	[[ -f $keyring ]] || die "$keyring is missing (package debian-archive-keyring); is this Debian?"
	log "adding contrib and non-free of $codename to apt: $SOURCES_FILE"
	cat >"$SOURCES_FILE" <<EOF
# Written by ffc's deploy/local/cuda.sh: Debian's CUDA toolkit is in contrib
# and non-free.
Types: deb
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: contrib non-free
Signed-By: $keyring
EOF
}

cmd_install() {
	if installed && nvcc_bin >/dev/null; then
		took "already installed: ${PACKAGES[*]}"
		versions
		return 0
	fi
	[[ $(id -u) == 0 ]] || die "install needs root (apt-get); run: sudo $0 install"
	command -v apt-get >/dev/null 2>&1 || die "install needs apt-get (Debian); elsewhere install the CUDA toolkit (nvcc, cuda.h, cublas_v2.h, libcuda, libcublas) by hand"
	export DEBIAN_FRONTEND=noninteractive
	if ! has_candidate; then
		add_sources
		log "apt-get update"
		apt-get update -qq
		has_candidate || die "apt has no candidate for ${PACKAGES[*]} even with $SOURCES_FILE; check the apt sources"
	fi
	mkdir -p "$APT_CACHE/partial"
	local cached
	cached=$(find "$APT_CACHE" -maxdepth 1 -name '*.deb' | wc -l)
	log "installing ${PACKAGES[*]} (--no-install-recommends; $cached .debs already in $APT_CACHE)"
	# Our own archives folder: it survives the Docker images' apt clean-up
	# hook (which empties /var/cache/apt/archives) and can be cached by CI.
	# The _apt sandbox user cannot write under root's home: download as root.
	apt-get install -y -qq --no-install-recommends \
		-o Dir::Cache::archives="$APT_CACHE" \
		-o APT::Keep-Downloaded-Packages=true \
		-o Binary::apt-get::APT::Keep-Downloaded-Packages=true \
		-o APT::Sandbox::User=root \
		"${PACKAGES[@]}" >/dev/null
	installed || die "${PACKAGES[*]} are not installed after apt-get install"
	took "installed ${PACKAGES[*]}; $(find "$APT_CACHE" -maxdepth 1 -name '*.deb' | wc -l) .debs ($(du -sh "$APT_CACHE" | cut -f1)) cached in $APT_CACHE"
	versions
}

versions() {
	local nvcc
	if nvcc=$(nvcc_bin); then
		log "nvcc: $nvcc: $("$nvcc" --version | awk '/release/ {sub(/^.*release /, ""); print; exit}')"
	else
		log "nvcc: not found"
	fi
	local p
	for p in "${PACKAGES[@]}" libcublas11 libcuda1; do
		local v
		v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
		[[ -n $v ]] && log "$p $v"
	done
	if command -v nvidia-smi >/dev/null 2>&1; then
		log "driver: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo 'nvidia-smi failed (no GPU?)')"
	else
		log "no nvidia-smi: no GPU driver on this machine (building works; running a cuda-tagged binary does not)"
	fi
}

# find_file NAME DIR...: the first DIR holding NAME.
find_file() {
	local name=$1 d
	shift
	for d in "$@"; do
		[[ -e $d/$name ]] && {
			echo "$d"
			return 0
		}
	done
	return 1
}

INCLUDE_DIRS=(/usr/include /usr/local/cuda/include /usr/local/cuda/targets/x86_64-linux/include)
LIB_DIRS=(/usr/lib/x86_64-linux-gnu /usr/local/cuda/lib64 /usr/local/cuda/lib64/stubs /usr/local/cuda/targets/x86_64-linux/lib)

cmd_check() {
	local nvcc ok=1
	nvcc=$(nvcc_bin) || die "nvcc not found (run: $0 install)"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	printf 'extern "C" __global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }\n' >"$tmp/k.cu"
	local arch
	for arch in 80 90; do
		if "$nvcc" -ptx -O3 -std=c++17 -arch=compute_$arch -o "$tmp/k$arch.ptx" "$tmp/k.cu" 2>"$tmp/err"; then
			log "nvcc -ptx -arch=compute_$arch: ok ($(awk '/^\.target/ {print $2}' "$tmp/k$arch.ptx"))"
		else
			log "nvcc -ptx -arch=compute_$arch FAILED: $(cat "$tmp/err")"
			ok=0
		fi
	done
	local h l
	for h in cuda.h cublas_v2.h; do
		if d=$(find_file "$h" "${INCLUDE_DIRS[@]}"); then log "$h: $d"; else
			log "$h: MISSING (nvidia-cuda-dev)"
			ok=0
		fi
	done
	for l in libcuda.so libcublas.so; do
		if d=$(find_file "$l" "${LIB_DIRS[@]}"); then log "$l: $d"; else
			log "$l: MISSING (nvidia-cuda-dev)"
			ok=0
		fi
	done
	versions
	((ok)) || die "the CUDA toolkit is incomplete"
	took "check passed"
}

cmd_env() {
	local nvcc inc lib
	if nvcc=$(nvcc_bin); then
		echo "export NVCC=$nvcc"
	fi
	# Debian puts everything on the default search paths; a toolkit under
	# /usr/local/cuda needs them for cgo.
	if inc=$(find_file cuda.h "${INCLUDE_DIRS[@]}") && [[ $inc != /usr/include ]]; then
		echo "export CGO_CFLAGS=\"-I$inc \${CGO_CFLAGS:-}\""
	fi
	if lib=$(find_file libcublas.so "${LIB_DIRS[@]}") && [[ $lib != /usr/lib/x86_64-linux-gnu ]]; then
		echo "export CGO_LDFLAGS=\"-L$lib \${CGO_LDFLAGS:-}\""
		echo "export LD_LIBRARY_PATH=\"$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
	fi
}

cmd_ptx_check() {
	local nvcc repo flags archs a f try ok=1
	nvcc=$(nvcc_bin) || die "nvcc not found (run: $0 install)"
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	read -r -a flags <<<"${NVCCFLAGS:--ptx -O3 -std=c++17}"
	read -r -a archs <<<"${PTX_ARCHS:-80 90}"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	for a in "${archs[@]}"; do
		f=kernels/cuda/ptx/ffc_sm$a.ptx
		if [[ ! -f $repo/$f ]]; then
			log "$f: MISSING (run make ptx and commit it)"
			ok=0
			continue
		fi
		for try in 1 2 3 4; do
			"$nvcc" "${flags[@]}" -arch="compute_$a" -o "$tmp/sm$a.ptx" "$repo/kernels/cuda/kernels.cu" || die "nvcc failed on kernels/cuda/kernels.cu"
			if cmp -s "$tmp/sm$a.ptx" "$repo/$f"; then
				log "$f: current (identical, compilation $try)"
				continue 2
			fi
			if cmp -s <(LC_ALL=C sort "$tmp/sm$a.ptx") <(LC_ALL=C sort "$repo/$f"); then
				log "$f: current (same instructions in another order: nvcc's nondeterminism; compilation $try)"
				continue 2
			fi
		done
		log "$f: STALE: differs from nvcc's output for kernels/cuda/kernels.cu; run make ptx and commit it:"
		diff "$repo/$f" "$tmp/sm$a.ptx" | head -20
		ok=0
	done
	((ok)) || exit 1
}

case ${1:-} in
install) cmd_install ;;
check) cmd_check ;;
env) cmd_env ;;
ptx-check) cmd_ptx_check ;;
-h | --help | help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
