#!/usr/bin/env bash
# The full-size generate run on a GPU machine (issue 14: one 81-frame 480p chunk with DMD and one UniPC+CFG step, per-
# stage times, DiT TFLOP/s and % of peak, device memory; the same with DiT block streaming at a 24 GB budget, and
# with fp8 when the build has it), with random weights of the real shapes: the 33 GB DiT and the 11 GB umT5 are
# created on the device when placed (benchmarks/zoom_e2e.py --random-weights real: lyra2.testing.random_weights, the
# backend op fill_random; no file, no host copy, nothing uploaded). The small networks that still load from files
# (CLIP, VAE, negative prompt, DMD LoRA: ~1.6 GB) are written to local disk first (make_random_checkpoint.py --small,
# reused when present). The run's LoRAs are folded on the device after placement (models/dit_lora_fold.c); the fp8
# runs fill each block Linear in bf16 on the device, fold, then quantize it there. stream24 fills (and folds) its
# streamed blocks in their pinned host copy.
#
# HOW TO RUN IT: a SECOND device call, on the machine benchmarks/device_check.sh left warm (its build is reused):
#     run(command="bash benchmarks/device_full.sh", carry=[".debs"], timeout_s=580)
# On a fresh machine it first builds (DEVICE_CHECK_BUILD_ONLY=1 bash benchmarks/device_check.sh, ~1.5 min).
# Logs to $OUT: device_full.log, make_random_checkpoint.log, zoom_e2e_tiny.log (the tiny dry run),
# zoom_e2e_full.log and full/zoom_e2e.json. Record card,
# date and numbers in benchmarks/RESULTS.md.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_full.log") 2>&1
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
PY=${PYTHON:-python3}
CK=${LYRA2_FULL_WORK:-/tmp/lyra2-random-small}
FAIL=0

stamp "build (reused when device_check.sh built here)"
if ! $PY -c "import lyra2, sys; sys.exit(0 if lyra2.backends()['cuda'] and not lyra2.backends()['emulated'] else 1)" \
    2>/dev/null; then
    DEVICE_CHECK_BUILD_ONLY=1 OUT="$OUT/build" bash benchmarks/device_check.sh > /dev/null 2>&1
    tail -5 "$OUT/build/device_check.log"
fi
$PY -c "import lyra2; b = lyra2.backends(); print('backends:', b); assert b['cuda'] and not b['emulated']" || exit 1
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv

stamp "random real-size small networks -> $CK (free disk: $(df -h --output=avail "$(dirname "$CK")" | tail -1))"
if [ ! -f "$CK/$($PY -c 'from lyra2.checkpoint import FILES; print(FILES["lora_dmd"])')" ]; then
    PYTHONUNBUFFERED=1 timeout 240 $PY benchmarks/make_random_checkpoint.py "$CK" --small \
        > "$OUT/make_random_checkpoint.log" 2>&1
    RC=$?
    tail -8 "$OUT/make_random_checkpoint.log"
    [ $RC = 0 ] || { echo "make_random_checkpoint failed ($RC)"; exit 1; }
fi
du -sh "$CK"

# The same script at tiny size first (seconds): what the full run exercises, found before its minutes start.
stamp "benchmarks/zoom_e2e.py --random-weights tiny (dry run, 32x48)"
PYTHONUNBUFFERED=1 LYRA2_REQUIRE_CUDA=1 timeout 120 $PY benchmarks/zoom_e2e.py --random-weights tiny --device cuda \
    --cfg-steps 1 --variants "${LYRA2_FULL_VARIANTS:-bf16,stream24,fp8}" --out "$OUT/tiny" \
    > "$OUT/zoom_e2e_tiny.log" 2>&1
RC=$?
tail -4 "$OUT/zoom_e2e_tiny.log"
[ $RC = 0 ] || { echo "tiny dry run failed ($RC): see zoom_e2e_tiny.log"; FAIL=1; }

# One DMD chunk and one UniPC+CFG step, resident bf16 then streamed at 24 GB (and fp8 when the build has it: a
# variant this build cannot run is reported with its error, zoom_e2e.py exits 1 then).
stamp "benchmarks/zoom_e2e.py --random-weights real (480p, 81 frames)"
PYTHONUNBUFFERED=1 LYRA2_REQUIRE_CUDA=1 timeout 420 $PY benchmarks/zoom_e2e.py --random-weights real --work "$CK" \
    --resolution 480p \
    --device cuda --cfg-steps 1 --variants "${LYRA2_FULL_VARIANTS:-bf16,stream24,fp8}" --out "$OUT/full" \
    > "$OUT/zoom_e2e_full.log" 2>&1
RC=$?
cat "$OUT/zoom_e2e_full.log"
echo "zoom_e2e.py exit status $RC"
[ $RC = 0 ] || FAIL=1
nvidia-smi --query-gpu=name,memory.used --format=csv
stamp "done (failures: $FAIL)"
sleep 1
exit $FAIL
