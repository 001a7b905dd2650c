#!/usr/bin/env bash
# Issue 16's whole-font hold-out: FFC, full FC and Partial FC on the full
# 71-package glyph set (ffc data glyphs --packages full), at equal
# wall-clock time. Top-1 is measured on the held-out fonts (never trained
# on) against class centers of seen-font images; TAR@FAR on the open-set
# classes (never trained on).
#
# Equal wall-clock: every run has one thread, and at most two run at once
# on the 2-core machine, so each has a core to itself whatever the other
# does. Each head first runs CALIB steps, which gives its seconds per
# step; it then gets BUDGET seconds' worth of steps. The table records
# the train time each run took.
#
#   benchmarks/quality/fonts.sh                 # 30 minutes of training per head
#   BUDGET=600 benchmarks/quality/fonts.sh      # a 10-minute trial
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs/fonts}
DATA=${DATA:-.cache/ffc-data/glyphs-full}
BUDGET=${BUDGET:-1800} # seconds of training per head
CALIB=${CALIB:-30}     # steps of the calibration runs
THREADS=1 # one core per run, two runs at a time
CENTERS=${CENTERS:-10} # train images per class center (ffc eval --center-images)
mkdir -p "$RUNS" bin
go build -o bin/ffc ./cmd/ffc
[ -f "$DATA/manifest.json" ] || bin/ffc data glyphs --packages full --out "$DATA"

common=(--offline --data "$DATA" --protocol fonts --threads "$THREADS" --eval=false --log-every 50)
# shellcheck source=recipes.sh
. benchmarks/quality/recipes.sh

# flags HEAD: the head's recipe, into the array r.
flags() { if [ "$1" = ffc ]; then r=(--head ffc "${ffc[@]}"); else r=(--head "$1" "${fc[@]}"); fi; }

# seconds per step of a finished run, from its summary.json
per_step() { python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["train"]; print(t["elapsed_ns"]/1e9/t["steps"])' "$1/summary.json"; }

# calib HEAD: the calibration run (no warm-up: CALIB may be shorter).
calib() {
	flags "$1"
	[ -f "$RUNS/calib-$1/summary.json" ] || bin/ffc train "${common[@]}" "${r[@]}" --warmup 0 --steps "$CALIB" --out "$RUNS/calib-$1" >"$RUNS/calib-$1.log" 2>&1
}

# train HEAD: BUDGET seconds' worth of its calibrated steps.
train() {
	local s steps
	s=$(per_step "$RUNS/calib-$1")
	steps=$(python3 -c "print(max($WARMUP + 1, int($BUDGET / $s)))") # the schedules need steps > warm-up
	echo "fonts: $1: $s s/step, $steps steps for $BUDGET s"
	flags "$1"
	[ -f "$RUNS/$1/summary.json" ] || bin/ffc train "${common[@]}" "${r[@]}" --steps "$steps" --out "$RUNS/$1" >"$RUNS/$1.log" 2>&1
}

# evaluate HEAD: the same held-out fonts, centers and open-set pairs for
# every head; the baselines (untrained network, raw pixels) come with FFC's.
evaluate() {
	local base=false
	[ "$1" = ffc ] && base=true
	[ -f "$RUNS/$1/eval.json" ] || bin/ffc eval --checkpoint "$RUNS/$1" --data "$DATA" --center-images "$CENTERS" \
		--threads "$THREADS" --baselines=$base >"$RUNS/$1-eval.log" 2>&1
}

calib ffc &
calib fc &
wait
calib pfc
train ffc &
train fc &
wait
train pfc &
evaluate ffc &
wait
evaluate fc &
evaluate pfc &
wait
go run ./benchmarks/quality "ours FFC=$RUNS/ffc" "ours FC=$RUNS/fc" "ours PFC=$RUNS/pfc" | tee "$RUNS/table.md"
