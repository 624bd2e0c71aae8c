"""Trainers: SFT, the DPO family (dpo, dpo_norm, ipo, simpo) and WRPO on one loop.

Light on import: torch, transformers and accelerate are imported inside the functions that
need them, so `import trainers` (and the CLI's help) stays fast. See docs/training.md.
"""
