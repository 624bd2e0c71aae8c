"""Moved to harness.scoring.math (shared by benchmarks and fusion data); kept so old imports work."""

from harness.scoring.math import (  # noqa: F401
    extract_answer,
    gsm8k_gold,
    is_equivalent,
    last_boxed,
    last_number,
    majority,
)
