"""Regenerates the hand-written LiveCodeBench-format problems in code_generation_lite/.

Run from this directory: python make_data.py. Rows use exactly the fields and encodings of
livecodebench/code_generation_lite: public_test_cases is a JSON string; private_test_cases is
base64(zlib(pickle(JSON string))); metadata is a JSON string with func_name for LeetCode-style
(functional) problems; contest_date is ISO 8601. The problems are written for these tests.
"""

import base64
import json
import pickle
import zlib
from pathlib import Path


def private(tests):
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def stdin(tests):
    return [{"input": i, "output": o, "testtype": "stdin"} for i, o in tests]


def functional(tests):
    return [{"input": i, "output": o, "testtype": "functional"} for i, o in tests]


def row(qid, title, content, platform, date, difficulty, starter, public, priv, meta):
    return {"question_title": title, "question_content": content, "platform": platform, "question_id": qid,
            "contest_id": qid.split("_")[0], "contest_date": date + "T00:00:00", "starter_code": starter,
            "difficulty": difficulty, "public_test_cases": json.dumps(public), "private_test_cases": private(priv),
            "metadata": json.dumps(meta)}


SUM = row("abc900_a", "Sum of Integers",
          "You are given N integers A_1, ..., A_N. Print their sum.\n\nInput\n\nN\nA_1 A_2 ... A_N\n\n"
          "Output\n\nPrint the sum.\n\nConstraints\n\n1 <= N <= 100\n-1000 <= A_i <= 1000",
          "atcoder", "2024-07-15", "easy", "",
          stdin([("3\n1 2 3\n", "6\n"), ("1\n-5\n", "-5\n")]),
          stdin([("4\n10 20 30 40\n", "100\n"), ("2\n-1000 1000\n", "0\n"), ("5\n1 1 1 1 1\n", "5\n")]), {})

TWO_SUM = row("lc9001", "Two Sum",
              "Given an array of integers nums and an integer target, return the indices of the two numbers "
              "such that they add up to target, in increasing order. Exactly one solution exists.",
              "leetcode", "2024-08-10", "medium",
              "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
              functional([("[2,7,11,15]\n9", "[0, 1]"), ("[3,2,4]\n6", "[1, 2]")]),
              functional([("[3,3]\n6", "[0, 1]"), ("[1,5,9,13]\n22", "[2, 3]"), ("[-4,8,1]\n-3", "[0, 2]")]),
              {"func_name": "twoSum"})

MEAN = row("abc901_b", "Average",
           "Given N integers, print their average. Your answer is accepted if it equals the exact value "
           "written as a decimal.\n\nInput\n\nN\nA_1 ... A_N\n\nOutput\n\nThe average.",
           "atcoder", "2024-09-20", "hard", "",
           stdin([("2\n2 3\n", "2.50\n"), ("4\n1 2 3 4\n", "2.5\n")]),
           stdin([("3\n3 3 3\n", "3.0\n"), ("2\n1 2\n", "1.5\n")]), {})

MAX_SUB = row("lc9002", "Maximum Subarray",
              "Given an integer array nums, return the largest sum of a non-empty contiguous subarray.",
              "leetcode", "2024-11-05", "hard",
              "class Solution:\n    def maxSubArray(self, nums: List[int]) -> int:\n        ",
              functional([("[-2,1,-3,4,-1,2,1,-5,4]", "6"), ("[1]", "1")]),
              functional([("[5,4,-1,7,8]", "23"), ("[-3,-1,-2]", "-1")]),
              {"func_name": "maxSubArray"})

if __name__ == "__main__":
    out = Path(__file__).parent / "code_generation_lite"
    out.mkdir(exist_ok=True)
    (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (SUM, TWO_SUM)))
    (out / "test2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (MEAN, MAX_SUB)))
