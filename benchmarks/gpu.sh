#!/usr/bin/env bash
# GPU figures for benchmarks/RESULTS.md in one prepared run (about 7 minutes on an H100/H200):
#   1. a CUDA build of torch: the installed one when it is a CUDA build, else `pip install torch` from the CUDA index
#      (needs the network);
#   2. bertgen's and the benchmarks' Python packages: from the wheels in $WHEELS (default .whl/) when that folder has
#      any (offline GPU machines: see --fetch-wheels), else `pip install -e ".[dev]"`;
#   3. benchmarks/gpu_bench.py: the bf16 training step of bert2bert BERT-base and robertaShare 24-layer, bertgen vs
#      transformers' EncoderDecoderModel (SDPA), eager and torch.compile, as tokens/s, MFU (model FLOPs per step /
#      (step time x the card's dense bf16 peak)) and peak memory; beam-4 decoding vs `generate` (fp32 and bf16);
#   4. `python train.py experiment=quickstart trainer=gpu`: the offline quickstart on the GPU (bf16-mixed).
# Results: $OUT (the device tool's output folder) or $TMPDIR/bertgen_gpu: gpu_results.json, gpu_bench.log, quickstart.log.
#
# usage:
#   bash benchmarks/gpu.sh [gpu_bench options]   # on the CUDA machine, e.g. --peak-tflops 989 --budget-s 240
#   bash benchmarks/gpu.sh --fetch-wheels        # before, on a machine that reaches PyPI: fills $WHEELS for an
#                                                # offline GPU machine with python 3.12 and CUDA torch preinstalled
#   bash benchmarks/gpu.sh --dry-run             # anywhere (CPU): every step on tiny shapes, nothing installed
#
# An offline device session (this workplace's H200 machines: python3 3.12 with torch 2.11+cu130, lightning,
# transformers 5.x, no hydra): `echo /.whl/ >> .git/info/exclude; bash benchmarks/gpu.sh --fetch-wheels`, then run
# `bash benchmarks/gpu.sh` there with `.whl` carried. The wheels pin transformers 4.x (the oracle bertgen is tested
# against; 5.x dropped tie_encoder_decoder) with the tokenizers / huggingface_hub it accepts, and Hydra.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
TMP_ROOT=${TMPDIR:-$(dirname "$(mktemp -u)")}
RESULTS=${OUT:-$TMP_ROOT/bertgen_gpu}
MODE=run
case "${1:-}" in
  --fetch-wheels) MODE=fetch; shift ;;
  --dry-run) MODE=dry; shift ;;
esac
PINS=(transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 hydra-core==1.3.8 omegaconf==2.3.1)

if [[ $MODE == fetch ]]; then
  mkdir -p "$WHEELS"
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "${PINS[@]}"
  $PY -m pip wheel -q --no-deps -w "$WHEELS" antlr4-python3-runtime==4.9.3   # an sdist only: build the wheel here
  ls -la "$WHEELS"
  exit 0
fi

mkdir -p "$RESULTS"
t_start=$SECONDS
phase() { echo "== $1 ($((SECONDS - t_start)) s)"; }
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export BERTGEN_DATA_CACHE="$RESULTS/data_cache"

if [[ $MODE == dry ]]; then
  phase "dry run: gpu_bench.py on tiny shapes"
  $PY benchmarks/gpu_bench.py --dry-run --out "$RESULTS" "$@" 2>&1 | tee "$RESULTS/gpu_bench.log"
  phase "dry run: the quickstart, 6 steps on CPU"
  $PY train.py experiment=quickstart trainer=cpu task.max_steps=6 task.val_check_interval=3 \
    task.val_max_examples=8 "hydra.run.dir=$RESULTS/quickstart" trainer.enable_progress_bar=false \
    2>&1 | tail -5 | tee "$RESULTS/quickstart.log"
  phase "dry run done"
  exit 0
fi

phase "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
phase "1. CUDA torch"
if ! $PY -c "import torch, sys; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)"; then
  $PY -m pip install -q torch --index-url "https://download.pytorch.org/whl/${CUDA_WHEEL:-cu126}"
fi
$PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"

phase "2. bertgen and the benchmark packages"
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TMP_ROOT/bertgen_site" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$TMP_ROOT/bertgen_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"   # bertgen from this checkout
else
  $PY -m pip install -q -e ".[dev]"
fi
$PY -c "import bertgen, transformers, lightning, hydra; print('transformers', transformers.__version__, \
'lightning', lightning.__version__, 'hydra', hydra.__version__)"

phase "3. gpu_bench.py"
set +e
timeout 390 $PY benchmarks/gpu_bench.py --out "$RESULTS" --budget-s 270 "$@" 2>&1 | tee "$RESULTS/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}

phase "4. quickstart with trainer=gpu"
t_q=$SECONDS
timeout 150 $PY train.py experiment=quickstart trainer=gpu "hydra.run.dir=$RESULTS/quickstart" \
  trainer.enable_progress_bar=false > "$RESULTS/quickstart.log" 2>&1
quick_rc=$?
tail -8 "$RESULTS/quickstart.log"
echo "quickstart: exit $quick_rc after $((SECONDS - t_q)) s"
[[ -f $RESULTS/quickstart/metrics.json ]] && cp "$RESULTS/quickstart/metrics.json" "$RESULTS/quickstart_metrics.json"
rm -rf "$RESULTS/quickstart" "$RESULTS/data_cache"   # only small files go back
phase "done: gpu_bench exit $bench_rc, quickstart exit $quick_rc"
