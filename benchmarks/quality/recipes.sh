# shellcheck shell=bash
# The training recipes of issue 16's rows, sourced by run.sh and fonts.sh:
# ffc for the FFC head, fc for the FC and PFC heads (and PyTorch's FC).
WARMUP=40
ffc=(--pool 338 --schedule poly --warmup "$WARMUP" --weight-decay 5e-4 --ema 0.99)
fc=(--schedule cosine --warmup "$WARMUP" --weight-decay 5e-4 --wd-scope all --init uniform)
