"""The command line: parsing, overrides resolved into a run, checks before any model loads, and one module per
sub-command under ``commands/``."""
