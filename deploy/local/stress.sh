#!/usr/bin/env bash
# Runs a command while busy loops load every core, as on a busy production
# host: `make test-stress` runs the whole suite this way, and it must pass.
#
#   deploy/local/stress.sh [--per-core N] -- command [args...]
#
# N busy loops per core (default 3, FFC_STRESS_PER_CORE) run at the same
# priority as the command, so the load average is about N · cores plus the
# command's own. They are stopped however the command ends; the exit status
# is the command's.
set -euo pipefail

per_core=${FFC_STRESS_PER_CORE:-3}
while (($#)); do
	case $1 in
	--per-core)
		per_core=${2:?--per-core needs a number}
		shift 2
		;;
	--)
		shift
		break
		;;
	*) break ;;
	esac
done
(($#)) || {
	echo "usage: ${0##*/} [--per-core N] -- command [args...]" >&2
	exit 2
}

cores=$(nproc)
loops=$((per_core * cores))
pids=()
stop() {
	((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT
for ((i = 0; i < loops; i++)); do
	bash -c 'while :; do :; done' &
	pids+=($!)
done
echo "stress: $loops busy loops on $cores cores ($per_core per core); running: $*" >&2
t0=$(date +%s)
rc=0
"$@" || rc=$?
echo "stress: '$*' exited $rc after $(($(date +%s) - t0)) s; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exit "$rc"
