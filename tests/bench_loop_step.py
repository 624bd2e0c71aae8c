"""pytest-benchmark: seconds per optimizer step of the real loop (`trainers.loop.train`) for DPO,
WRPO and InfiFPO on the embedded SmolLM2-135M (fp32, CPU), issue 11's performance check:

    flock /tmp/heavy.lock .tox/test/bin/python -m pytest tests/bench_loop_step.py --benchmark-enable -s \
        --benchmark-json=/tmp/bench_loop_step.json [-k dpo]

The benchmark times one whole `train()` call (model load, reference precompute, steps, save); the
figure that matters is `extra_info["tokens_per_s_median"]`: the median over steps 2..N of the
tokens/s each metrics record carries (logging_steps 1: the step's attention-mask tokens over the
seconds since the previous record: policy forward + loss + backward + AdamW, collation included).
Both the redesigned loop and the one before it write that record the same way, so this file runs
unchanged against the commit before the redesign (docs/performance.md, issue 11: copy it into a
`git worktree` of that commit), and with the same rows the tokens per step are equal, so the
ratio of tokens/s is the inverse ratio of seconds per step. Step 1 pays warm-up and is left out.

Same rows for every objective: a GSM8K-style prompt with y_ws / y_wt / y_l (WRPO) and chosen /
rejected (the DPO family) of about `RESPONSE_TOKENS` tokens each; InfiFPO rows also bring two
sources' log-probs in the authors' released format (`fuse_*_logps`, sums and per-token means),
so its reference fusion is precomputed as the issue intends and the step is comparable to DPO's.
"""

from __future__ import annotations

import json
import os
import statistics

import pytest

pytest.importorskip("torch")

STEPS = int(os.environ.get("BENCH_LOOP_STEPS", "8"))
BATCH = 2
RESPONSE_TOKENS = 64


def _rows(n: int, with_sources: bool) -> list[dict]:
    filler = " ".join(["so the total is 12 apples and 7 pears"] * (RESPONSE_TOKENS // 8))
    rows = []
    for i in range(n):
        row = {"prompt": f"Question {i}: Tom has 5 apples and buys 7 more. How many apples does he have?",
               "y_ws": f"5 + 7 = 12. {filler}", "y_wt": f"He has 12 apples. {filler}", "y_l": f"He has 2. {filler}",
               "chosen": f"5 + 7 = 12. {filler}", "rejected": f"He has 2. {filler}"}
        if with_sources:  # two sources; token counts = sum / mean (about RESPONSE_TOKENS)
            row.update(fuse_chosen_logps=[-40.0 - i, -52.0], fuse_mean_chosen_logps=[-0.625 - i / 64, -0.8125],
                       fuse_rejected_logps=[-70.0, -66.0 - i], fuse_mean_rejected_logps=[-1.09375, -1.03125 - i / 64])
        rows.append(row)
    return rows


@pytest.mark.parametrize("method", ["dpo", "wrpo", "infifpo"])
def test_loop_step_seconds(benchmark, tmp_path, method):
    from harness.models import ensure_alias
    from trainers.config import load_config
    from trainers.loop import train

    model = str(ensure_alias("smollm2-135m-instruct"))
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(BATCH * STEPS, method == "infifpo")))
    runs = []

    def once() -> None:
        out = tmp_path / f"out{len(runs)}"
        cfg = load_config(None, method, {"model": model, "data": str(data), "output_dir": str(out),
                                         "max_steps": STEPS, "batch_size": BATCH, "logging_steps": 1})
        res = train(cfg, None, progress=False)
        runs.append([json.loads(x) for x in res.metrics_file.read_text().splitlines()])

    benchmark.pedantic(once, rounds=1, iterations=1)
    recs = runs[-1]
    tokens = [r["tokens_per_s"] for r in recs]
    assert len(recs) == STEPS and all(t > 0 for t in tokens)
    benchmark.extra_info.update(method=method, steps=STEPS, batch_rows=BATCH, response_tokens=RESPONSE_TOKENS,
                                tokens_per_s=[round(t, 1) for t in tokens],
                                tokens_per_s_median=statistics.median(tokens[1:]),
                                load_avg_1m_end=os.getloadavg()[0])
