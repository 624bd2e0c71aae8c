"""Fusion data construction (FuseChat-3.0 / WRPO), the step no public code releases.

prompt pools -> k answers per prompt from every source (the harness runner: cached in the
store, resumable) -> scores (math: answer check; code: tests in the sandbox; instructions:
a reward model or a judge) -> SFT rows, same-source DPO pairs in a reward-gap window, WRPO
quadruples -> contamination check against every registered benchmark -> files in one dir.

Modules: config (the recipe), pools, sampling, scoring, selection (pure functions),
contamination, pipeline (`build_data`, what `harness fuse data` runs). See docs/fusion.md.
Heavy imports stay inside functions so `import trainers.fusion` is cheap.
"""
