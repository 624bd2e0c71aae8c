"""Parameter merging as a fusion stage: mergekit merges registered as candidates with every parent,
SCE in two explicit semantics (docs/fusion.md "Parameter merging").

Modules: `run` (run_merge: resolve, check, merge atomically, register), `sce` (the two SCE
semantics and the fallback count; imports torch), `checks`, `config` (light), `stage` (the
pipeline's `merge` stage kind; light), `bench`. Nothing is imported here so that the pipeline's
recipe loading stays free of torch and mergekit.
"""
