"""The benchmark registry: name -> "module:Class", resolved lazily (DESIGN.md §8.3).

Add a benchmark: one file in this package, one line here.
"""

from harness.registry import Registry

BENCHMARKS = Registry(
    "benchmark",
    {
        "gsm8k": "harness.benchmarks.gsm8k:GSM8K",
        "math500": "harness.benchmarks.math500:MATH500",
        "aime24": "harness.benchmarks.aime:AIME24",
        "aime25": "harness.benchmarks.aime:AIME25",
        "humaneval": "harness.benchmarks.humaneval:HumanEval",
        "livecodebench": "harness.benchmarks.livecodebench:LiveCodeBench",
        "alpaca-eval-2": "harness.benchmarks.alpaca_eval:AlpacaEval2",
        "arena-hard": "harness.benchmarks.arena_hard:ArenaHard",
        "mt-bench": "harness.benchmarks.mt_bench:MTBench",
        "mmlu-pro": "harness.benchmarks.mmlu_pro:MMLUPro",
        "mmlu": "harness.benchmarks.mmlu:MMLU",
        "mmlu-redux": "harness.benchmarks.mmlu_redux:MMLURedux",
        "gpqa-diamond": "harness.benchmarks.gpqa_diamond:GPQADiamond",
        "amc23": "harness.benchmarks.amc23:AMC23",
        "livebench": "harness.benchmarks.livebench:LiveBench",
        "alignbench": "harness.benchmarks.alignbench:AlignBench",
        "mbpp-plus": "harness.benchmarks.mbpp_plus:MBPPPlus",
        "theoremqa": "harness.benchmarks.theoremqa:TheoremQA",
    },
    # any lm-evaluation-harness task: lm-eval:<task> (harness/benchmarks/lm_eval_task.py)
    prefixes={"lm-eval:": "harness.benchmarks.lm_eval_task:lm_eval_benchmark"},
)
