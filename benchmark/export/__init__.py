"""Results into other ecosystems: lm-evaluation-harness tasks and hooks, saved students as Hugging Face models."""
