"""Annotation of a round's answer pairs with decoupled Safe RLHF labels, by people or by an LLM judge.

Three annotators produce :class:`~saferlhf.data.records.PreferenceRecord` s:

- rules: :func:`saferlhf.pipeline.annotator.annotate_pair` (built in, documented there);
- human: :func:`export_pairs` -> :func:`serve` (a local page, one pair at a time, saved after
  every answer) -> :func:`import_labels`;
- LLM judge: :func:`judge_pairs` over an OpenAI-compatible endpoint.

File formats and the page: docs/annotation.md and :mod:`saferlhf.annotation.files`.
"""

from saferlhf.annotation.files import (AnnotationError, IncompleteLabelsError, export_pairs, import_labels,
                                       labels_path_for)
from saferlhf.annotation.judge import PairJudgeConfig, judge_pairs
from saferlhf.annotation.server import make_server, serve

__all__ = ["AnnotationError", "IncompleteLabelsError", "PairJudgeConfig", "export_pairs", "import_labels",
           "judge_pairs", "labels_path_for", "make_server", "serve"]
