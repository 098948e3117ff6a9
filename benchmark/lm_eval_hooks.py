"""Deprecated location, kept for one release: lm-eval task folders exported before the hooks moved to
:mod:`benchmark.export.lm_eval_hooks` import them from here. Re-export (``run_bench.py export-lm-eval DIR``) to drop it."""
import warnings

from benchmark.export.lm_eval_hooks import load_dataset, process_results

warnings.warn("benchmark.lm_eval_hooks moved to benchmark.export.lm_eval_hooks; re-export this lm-eval task folder "
              "with `python run_bench.py export-lm-eval DIR`", DeprecationWarning, stacklevel=2)

__all__ = ["load_dataset", "process_results"]
