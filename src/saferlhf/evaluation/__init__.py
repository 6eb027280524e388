"""Evaluation: benchmark loaders, batched generation, refusal / harm metrics, arena and Elo, LLM judge.

Entry point: ``saferlhf evaluate`` (:mod:`saferlhf.evaluation.stage`). The report is written by
:mod:`saferlhf.report`.
"""
