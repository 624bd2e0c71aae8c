"""`harness pipeline`: the whole fusion loop as hashed, resumable stages (run.py)."""
