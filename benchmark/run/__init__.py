"""The grid: cells enumerated and claimed, each run by its recipe in a task×pair context with its teacher side;
executors, Slurm arrays and the provenance every cell records."""
