"""What trains and evaluates one model: collation, prompts, the training harness, on-policy sampling, generation,
precision, processes and memory. Knows nothing of grids, stores or the command line."""
