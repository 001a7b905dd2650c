#!/usr/bin/env bash
# Issue 16's learning-quality runs on the CI glyph set with the
# last-image protocol, then the table (benchmarks/quality/RESULTS.md) and
# the learning curves (runs/quality/learning.png). About 2½ hours on a
# quiet 2-core machine (estimated from the single runs' times, not timed
# end to end); each run writes its folder under $RUNS (default
# runs/quality), and a finished run is not run again. The FC rows, ours
# and PyTorch's, are the mean of FC_SEEDS.
#
#   benchmarks/quality/run.sh            # everything
#   JOBS=2 THREADS=1 benchmarks/quality/run.sh   # two runs at a time, one thread each
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs/quality}
JOBS=${JOBS:-1}
THREADS=${THREADS:-0}
STEPS=${STEPS:-860} # two epochs of the 27,516 train images at B = 64
FC_SEEDS=${FC_SEEDS:-1 2 3} # the FC rows (ours and PyTorch's) average these seeds
mkdir -p "$RUNS" bin
go build -o bin/ffc ./cmd/ffc
go build -o bin/torchref ./benchmarks/torchref
[ -f .cache/ffc-data/glyphs-ci/manifest.json ] || bin/ffc data glyphs

common=(--protocol last-image --steps "$STEPS" --threads "$THREADS")
# shellcheck source=recipes.sh
. benchmarks/quality/recipes.sh

# run NAME CMD...: runs CMD unless $RUNS/NAME holds a finished run.
run() {
	local name=$1
	shift
	if [ -f "$RUNS/$name/summary.json" ] || [ -f "$RUNS/$name/eval.json" ]; then
		echo "quality: $name: done before, kept"
		return
	fi
	echo "quality: $name: $*"
	"$@" >"$RUNS/$name.log" 2>&1
}

jobs_wait() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done; }

train() { bin/ffc train --offline "${common[@]}" --baselines=false --snapshot-every 86 --log-every 50 "$@"; }
run ffc train "${ffc[@]}" --out "$RUNS/ffc" &
jobs_wait
run ffc-id-only train "${ffc[@]}" --id-only --out "$RUNS/ffc-id-only" &
jobs_wait
run ffc-instances-only train "${ffc[@]}" --dual-loader=false --out "$RUNS/ffc-instances-only" &
jobs_wait
run pfc train --head pfc "${fc[@]}" --out "$RUNS/pfc" &
jobs_wait
# Making FFC better: each candidate is a row beside ours FFC, one change each.
run ffc-arcface train "${ffc[@]}" --margin arcface --out "$RUNS/ffc-arcface" &
jobs_wait
# The FC pair, one run per seed: seed 1 in fc and torch-fc, seed S in fc-sS
# and torch-fc-sS. The baselines come with the PyTorch run's evaluation
# (ffc eval's default).
torch_fc() { bin/torchref train "${common[@]}" --head fc "${fc[@]}" --seed "$1" --out "$RUNS/$2" && bin/ffc eval --checkpoint "$RUNS/$2" --threads "$THREADS"; }
ours_fc=() torch_fcs=()
for seed in $FC_SEEDS; do
	sfx=""
	[ "$seed" = 1 ] || sfx="-s$seed"
	run "fc$sfx" train --head fc "${fc[@]}" --seed "$seed" --out "$RUNS/fc$sfx" &
	jobs_wait
	run "torch-fc$sfx" torch_fc "$seed" "torch-fc$sfx" &
	jobs_wait
	ours_fc+=("$RUNS/fc$sfx") torch_fcs+=("$RUNS/torch-fc$sfx")
done
wait

join() { local IFS=,; echo "$*"; }
go run ./benchmarks/quality "PyTorch FC=$(join "${torch_fcs[@]}")" "ours FFC=$RUNS/ffc" "ours FC=$(join "${ours_fc[@]}")" "ours PFC=$RUNS/pfc" \
	"ours FFC, id loader only=$RUNS/ffc-id-only" "ours FFC, instance loader only=$RUNS/ffc-instances-only" \
	"ours FFC, ArcFace (m 0.5)=$RUNS/ffc-arcface" | tee "$RUNS/table.md"
bin/ffc curve --center-images 1 --threads "$THREADS" --out "$RUNS/learning.png" "$RUNS/ffc" "$RUNS/fc" "$RUNS/pfc"
