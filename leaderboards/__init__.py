"""Leaderboards: every candidate against its target and each source (DESIGN.md §2, §5).

A leaderboard definition is a YAML file in this directory (or anywhere, by path) naming a
suite and the models with their roles; `harness leaderboard build NAME --out DIR` reads the
runs from the store (or `harness run` output directories) and writes one self-contained
HTML page plus drill-down pages. Nothing here imports heavy libraries.
"""

from leaderboards.build import Leaderboard, build_leaderboard
from leaderboards.spec import LeaderboardSpec, load_spec

__all__ = ["Leaderboard", "LeaderboardSpec", "build_leaderboard", "load_spec"]
