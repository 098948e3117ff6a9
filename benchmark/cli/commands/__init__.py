"""The subcommands of ``run_bench.py``: one module each, with ``add_arguments(parser)`` and ``main(args, argv)``."""
