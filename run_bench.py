#!/usr/bin/env python
"""CTKD-Bench entry point; see ``python run_bench.py --help``."""
import sys

from benchmark.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
