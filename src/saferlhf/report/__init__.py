"""Evaluation report: ``report.html`` (self-contained), ``report.md`` and the figures."""

from saferlhf.report.writer import write_report

__all__ = ["write_report"]
