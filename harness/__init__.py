"""fuse-harness: evaluation, benchmarks and training for implicit model fusion.

Importing this package must stay cheap (no torch, no vLLM): heavy parts are imported
where they are used.
"""

__version__ = "0.1.0"
