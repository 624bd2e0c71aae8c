"""Token-level knowledge fusion: teacher signals, vocabulary alignment, distillation losses."""
