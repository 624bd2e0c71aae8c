"""TheoremQA (Chen et al., EMNLP 2023, "TheoremQA: A Theorem-driven Question Answering
Dataset"): 800 university-level STEM questions, each answerable by applying one theorem.

Data: TIGER-AI-Lab/TheoremQA@acfc968 `theoremqa_test.json` (MIT); offline:
<data dir>/theoremqa/theoremqa_test.json (a JSON array). Fields used: `Question`, `Answer`,
`Answer_type` (integer 216, float 378, bool 115, list of integer 61, list of float 12,
option 18), `Picture`, `field`, `subfield`. Item id: `id` (e.g. "jianyu_xu/Lah_number_6.json").
Image items: 53 questions refer to a picture (`Picture: images/...`) that is not in the
repository. They are skipped by default; the count is logged and reported in the accuracy
metric (`image_items_skipped`) and in results.json (`image_items`). Option
`include_image_items: true` keeps them as text-only questions, which is what upstream's
run.py and OpenCompass do (their accuracy is over all 800).
`--limit N`: the first N items in file order (after the image filter).

Prompt: the InfiFusion / InfiFPO papers say TheoremQA "keeps the community prompt", i.e.
OpenCompass's default config, `TheoremQA_gen.py` -> `TheoremQA_5shot_gen_6f0af8.py`
(open-compass/opencompass@a5acc4b; the same since it was added in 004ed79, 2024-04-22): 5 shots as chat turns; the first
user turn opens with "You are supposed to provide a solution to a given problem.\\n\\n", each
user turn is "Problem:\\n{question}\\nSolution:", each assistant turn a worked solution ending
"The answer is X"; the shots are `TheoremQA_few_shot_examples.py` (FEW_SHOT below). This is
TIGER-Lab's own `--form short` 5-shot prompt (data_loader.py::get_short_format,
README "Running Instruction"), put into chat turns, with OpenCompass's tidied copy of
examples.py (LaTeX in $...$, the "Trur" typo and the "\\f"/"\\r" escape slips fixed).
Option `shots` (0-5, default 5) takes the first k shots (0: the bare question turn, no header,
as OpenCompass builds it).
Generation: greedy, 1024 new tokens (OpenCompass max_out_len; TIGER-Lab's run.py: 2048), stop
strings "Problem:" and "Problem" (OpenCompass's stopping_criteria; the bare "Problem" ends a
solution at any use of the word, as upstream).
Metric: accuracy = share of items graded correct by harness.scoring.theoremqa (upstream's
answer_clean + compare_answer_with_groundtruth: "The answer is" extraction, yes/no and option
rules, 4% relative tolerance for float golds, rounding for integer golds). Option `grader`:
"tiger_lab" (default; TIGER-Lab's run.py: list golds compared numerically when written as a
tuple, bool golds by string) or "opencompass" (TheoremQAEvaluatorV3: list golds by string,
bool golds also numerically). Also `accuracy_<answer type>` per answer type and, in the
accuracy metric, `empty_answers` (nothing extracted: compute_accuracy.py's `fail`). Bootstrap
95% CI over items.
VERSION 1.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from harness.benchmarks.base import Benchmark, BenchmarkOptions, Example, take
from harness.data import DataSource, load_rows
from harness.scoring.theoremqa import Grader, extract_answer, gold_value, is_correct
from harness.stats import mean_metric
from harness.types import Completion, Message, Request, SamplingParams

log = logging.getLogger(__name__)

HEADER = "You are supposed to provide a solution to a given problem.\n\n"
TURN = "Problem:\n{question}\nSolution:"
STOPS = ("Problem:", "Problem")
ANSWER_TYPES = ("integer", "float", "bool", "list of integer", "list of float", "option")

# open-compass/opencompass@a5acc4b opencompass/configs/datasets/TheoremQA/
# TheoremQA_few_shot_examples.py (blob 81f057c8), verbatim: (question, solution) pairs.
FEW_SHOT: tuple[tuple[str, str], ...] = (
    ('In a 10 Gigabit Ethernet network, the average size of a frame is 1500 bytes. If '
     'a burst of noise lasting 1ms interrupts the network, how many frames are lost?',
     'First, calculate the data rate in bytes/s:\n'
     '$$10 Gigabit/s * (1 Byte / 8 bits) = 1.25 * 10^9 Bytes/s$$\n'
     'Next, calculate the data loss in bytes due to the noise:\n'
     '$$1 ms * 1.25 * 10^9 Bytes/s = 1.25 * 10^6 Bytes$$\n'
     'Finally, divide the data loss by the average frame size to get the number of frames '
     'lost:\n'
     '$$1.25 * 10^6 Bytes / 1500 Bytes/frame \\approx 833.33 frames$$\n'
     'The answer is 833.33'),
    ('Given x = 0.157, what is the value of $x \\times \\frac{\\prod_{n=1}^\\infty (1 - \\frac{x^2}{n^2 '
     '\\pi^2})}{\\sin(x)}$?',
     'To evaluate the expression $x \\times \\frac{\\prod_{n=1}^{\\infty} (1 - \\frac{x^2}{n^2 '
     '\\pi^2})}{\\sin(x)}$ given x = 0.157, we first recognize that the product in the numerator '
     "is related to the sine function through the Euler's reflection formula for the sine "
     'function, which can be expressed as:\n'
     '$$\\sin(x) = x \\prod_{n=1}^{\\infty} \\left(1 - \\frac{x^2}{n^2 \\pi^2}\\right)$$\n'
     'Therefore, the given expression simplifies to: $x \\times \\frac{\\sin(x)}{\\sin(x)}$\n'
     'Because sin(x) in the numerator and denominator cancels out, the expression simplifies '
     'further to just x.\n'
     'So, given x = 0.157, the value of the expression is 0.157. This result is derived '
     'from the properties of the sine function and does not require computational evaluation.\n'
     'The answer is 0.157'),
    ('Consider the basis C of $\\mathbb{R}^2$ consisting of vectors $u_1 = [2, 4]$ and '
     '$u_2 = [1, -1]$. If $y = [8, 12]$, find the C-coordinate vector of y.',
     'The goal is to express y as a linear combination of the basis vectors of C, i.e., '
     '$y = a\\cdot u_1 + b\\cdot u_2$, where a and b are the scalar coefficients that we '
     "want to find. These coefficients will form the C-coordinate vector of y, which we'll "
     'denote as $[a, b]_C$.\n'
     'Given:\n'
     '- $u_1 = [2, 4]$,\n'
     '- $u_2 = [1, -1]$,\n'
     '- $y = [8, 12]$.\n'
     'We need to solve the system of linear equations:\n'
     '2a + 1b = 8\n'
     '4a - 1b = 12\n'
     "Let's solve this system of equations to find a and b.\n"
     'The solution to the system of equations is $a = \\frac{10}{3} and b = \\frac{4}{3}$. '
     'Therefore, the C-coordinate vector of y in the basis consisting of vectors $u_1 '
     '= [2, 4]$ and $u_2 = [1, -1]$ is $\\left[\\frac{10}{3}, \\frac{4}{3}\\right]_C$.\n'
     "Let's calculate the numerical value of $\\left[\\frac{10}{3}, \\frac{4}{3}\\right]_C$ "
     'as [3.33, 1.33].\n'
     'The answer is [3.33, 1.33]'),
    ('One can draw a simple, connected planar graph with 200 vertices and 397 edges. Is '
     'this statement True or False?',
     "To determine the answer, we can use Euler's formula for planar graphs, which states "
     'that for any finite, connected, planar graph, $V - E + F = 2$, where V is the number '
     'of vertices, E is the number of edges, and F is the number of faces.\n'
     'Given the modified question, we have V = 200 vertices and E = 397 edges. We want '
     "to find if we can have a graph that satisfies these conditions, adhering to Euler's "
     'formula.\n'
     "First, let's rearrange Euler's formula to solve for F:  F = E - V + 2\n"
     'Substituting the given values: F = 397 - 200 + 2,  F = 199\n'
     'This means a graph with 200 vertices and 397 edges would have 199 faces. However, '
     "to determine the truth of this possibility, we should check if this graph doesn't "
     'violate any other planar graph constraints, particularly regarding the number of '
     'edges.\n'
     "For a simple, connected planar graph, there's also a relationship between vertices, "
     'edges, and faces given by the inequality: $E \\leq 3V - 6$\n'
     'Substituting V = 200 gives: $E \\leq 3*200 - 6 = 594$\n'
     "With E = 397, the condition $E \\leq 594$ is satisfied, meaning it's theoretically "
     'possible in terms of the edge condition for a planar graph.\n'
     'Therefore, one can draw a simple, connected planar graph with 200 vertices and 397 '
     'edges, resulting in 199 faces, without violating the conditions for it to be planar '
     "according to both Euler's formula and the constraint on the maximum number of edges.\n"
     'The answer is True'),
    ('Given a finite group G, and a collection of permutations H on a set. Then (a) there '
     'always exists H such that G is isomorphic to H; (b) for any H, G is isomorphic to '
     'H; (c) G can never be isomorphic to H; (d) none of the above. Which option is correct?',
     "This is based on Cayley's theorem, which states that every group G is isomorphic "
     'to a subgroup of the symmetric group acting on G.\n'
     'In other words, for every finite group G, there exists a collection of permutations '
     'H (which in this context, can be thought of as the set of permutations representing '
     'the action of G on itself) such that G is isomorphic to H.\n'
     'Therefore, there always exists H such that G is isomorphic to H.\n'
     'The answer is (a)'),
)


class TheoremQAOptions(BenchmarkOptions):
    include_image_items: bool = False  # keep the 53 questions whose picture is missing
    shots: int = Field(5, ge=0, le=len(FEW_SHOT))
    grader: Grader = "tiger_lab"


class TheoremQA(Benchmark):
    name = "theoremqa"
    VERSION = "1"
    headline = "accuracy"
    Options = TheoremQAOptions
    scores_every_sample = True
    default_params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=1024, stop=STOPS)
    source = DataSource("theoremqa/theoremqa_test.json")
    image_items: dict[str, int] | None = None  # set by load(): {"total", "skipped"}

    def load(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        rows, self.dataset_revision = load_rows(self.name, self.source, self.ctx.data_dir)
        examples = [Example(id=r["id"], data={
            "question": r["Question"], "answer": r["Answer"], "answer_type": r["Answer_type"],
            "picture": r.get("Picture"), "field": r.get("field"), "subfield": r.get("subfield")}) for r in rows]
        with_picture = sum(bool(ex.data["picture"]) for ex in examples)
        skipped = 0 if self.opts.include_image_items else with_picture
        self.image_items = {"total": with_picture, "skipped": skipped}
        if skipped:
            log.warning("theoremqa: skipping %d of %d items whose question needs a picture that the data "
                        "does not have (option include_image_items: true keeps them as text)",
                        skipped, len(examples))
            examples = [ex for ex in examples if not ex.data["picture"]]
        return take(examples, limit)

    def to_requests(self, example: Example) -> list[Request]:
        messages: list[Message] = []
        for i, (question, solution) in enumerate(FEW_SHOT[:self.opts.shots]):
            header = HEADER if i == 0 else ""
            messages += [{"role": "user", "content": header + TURN.format(question=question)},
                         {"role": "assistant", "content": solution}]
        messages.append({"role": "user", "content": TURN.format(question=example.data["question"])})
        return [Request(id=self.request_id(example), messages=tuple(messages), params=self.params)]

    def score(self, examples: list[Example], completions: dict[str, Completion]) -> list[dict[str, Any]]:
        return [score_item(ex, completions[self.request_id(ex)], self.opts.grader) for ex in examples]

    def aggregate(self, scores: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        seed = self.ctx.seed
        out = {"accuracy": {**mean_metric([s["score"] for s in scores], seed=seed), "grader": self.opts.grader,
                            "empty_answers": sum(s["extracted"] == "" for s in scores),
                            "image_items_skipped": (self.image_items or {}).get("skipped")}}
        for answer_type in ANSWER_TYPES:
            of_type = [s["score"] for s in scores if s["answer_type"] == answer_type]
            if of_type:
                out["accuracy_" + answer_type.replace(" ", "_")] = mean_metric(of_type, seed=seed)
        return out

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "image_items": self.image_items}


def score_item(example: Example, completion: Completion, grader: Grader) -> dict[str, Any]:
    """One item's verdict: `correct`/`extracted` are the first sample's; with n > 1 samples
    `score` is the mean over samples and the per-sample lists are added. A failed generation
    scores 0 with its error kept (and is not cached by the runner)."""
    gold = str(example.data["answer"])
    item = {"id": example.id, "gold": gold, "answer_type": example.data["answer_type"]}
    if completion.error:
        return {**item, "score": 0.0, "correct": False, "extracted": None, "error": completion.error,
                "finish_reason": None}
    gold_num = gold_value(example.data["answer"], example.data["answer_type"], grader)
    extracted = [extract_answer(t, grader) for t in completion.texts or [""]]
    correct = [is_correct(a, gold, gold_num) for a in extracted]
    item.update(score=sum(correct) / len(correct), correct=correct[0], extracted=extracted[0],
                finish_reason=completion.finish_reasons[0] if completion.finish_reasons else None)
    if len(correct) > 1:
        item.update(n=len(correct), correct_per_sample=correct, extracted_per_sample=extracted)
    return item
