"""Scorers shared by benchmarks and fusion data: math answers, multiple choice, code verdicts."""
