"""The kernel: registry, digests, file I/O, paths and build locks. Standard library only; ``methods/`` and ``tasks/``
import nothing of ``benchmark`` but this wing."""
