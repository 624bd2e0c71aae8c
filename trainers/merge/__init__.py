"""Parameter merging as a fusion stage (mergekit; SCE in two explicit semantics). See docs/fusion.md."""

from trainers.merge.run import MergeError, MergeProvenance, MergeResult, load_merge_config, run_merge
from trainers.merge.sce import SCE_METHODS, fuseai_sce

__all__ = ["MergeError", "MergeProvenance", "MergeResult", "SCE_METHODS", "fuseai_sce", "load_merge_config",
           "run_merge"]
