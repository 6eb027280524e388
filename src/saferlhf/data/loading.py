"""Load preference records and prompts from a :class:`~saferlhf.config.DataSource`.

- :func:`load_records`: one source -> records (bad rows included as placeholders, see
  :mod:`saferlhf.data.adapters`); always pass them through
  :func:`~saferlhf.data.validation.validate_records` before use.
- :func:`load_preference_data`: a whole :class:`~saferlhf.config.DataConfig` -> validated train and
  eval records plus one report (printed), with a seeded split when no eval source is given.
- :func:`load_prompts`: prompts for generation, from a prompt file or dataset (column ``prompt``,
  else ``instruction``, ``goal``, ``Behavior`` or ``question``) or from a preference source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from saferlhf.config import DataConfig, DataSource
from saferlhf.data.adapters import ERRORS_KEY, FORMATS, KNOWN_IDS, to_records
from saferlhf.data.readers import DataFormatError, RawRow, columns_of, read_rows
from saferlhf.data.records import PreferenceRecord, Prompt
from saferlhf.data.split import split_records
from saferlhf.data.validation import (DataValidationError, ValidationReport, prompt_problems, check_record,
                                      validate_records)

PROMPT_COLUMNS = ("prompt", "instruction", "goal", "Behavior", "question")
PROMPT_FORMAT = "prompts"


def load_records(source: DataSource) -> list[PreferenceRecord]:
    """All rows of one preference source as records, each with ``source`` = its ``file:line``."""
    _check_format(source, allow_prompts=False)
    rows = read_rows(source.path, source.split, source.limit)
    return to_records(rows, source.format, source.path)


@dataclass
class PreferenceData:
    train: list[PreferenceRecord]
    eval: list[PreferenceRecord]
    report: ValidationReport  # covers every row read, train and eval sources alike


def load_preference_data(data: DataConfig, tokenizer=None, need: str = "any") -> PreferenceData:
    """Read, validate (policy ``data.invalid_rows``) and split the configured preference data.

    With a tokenizer, rows whose responses do not fit in ``data.max_length`` are reported as
    ``overlong``. Without ``data.eval`` sources, ``data.eval_fraction`` of the validated training
    records is held out by :func:`~saferlhf.data.split.split_records` with ``data.split_seed``.
    """
    if not data.train:
        raise DataFormatError("data.train: no training source given")
    train_rows = [record for source in data.train for record in load_records(source)]
    eval_rows = [record for source in data.eval for record in load_records(source)]
    max_length = data.max_length if tokenizer is not None else None
    kept, report = validate_records(train_rows + eval_rows, tokenizer, max_length, data.invalid_rows, need)
    print("[saferlhf] " + report.summary(), flush=True)
    eval_ids = {id(record) for record in eval_rows}
    train = [record for record in kept if id(record) not in eval_ids]
    evaluation = [record for record in kept if id(record) in eval_ids]
    if not train:
        raise DataValidationError("no usable training record is left after validation:\n" + report.summary())
    if not data.eval:
        train, evaluation = split_records(train, data.eval_fraction, data.split_seed)
        print(f"[saferlhf] split {len(train) + len(evaluation)} records: {len(train)} train, {len(evaluation)} "
              f"eval (eval_fraction={data.eval_fraction}, split_seed={data.split_seed})", flush=True)
    return PreferenceData(train=train, eval=evaluation, report=report)


# --------------------------------------------------------------------------------------------
# Prompts


def load_prompts(source: DataSource) -> list[Prompt]:
    """Prompts (strings or message lists) of a prompt source or of a preference source.

    Rows without a usable prompt (empty, missing, wrong type, unreadable) are skipped and counted,
    and the count per reason is printed with the first locations. Prompts of a preference source
    are de-duplicated (several pairs share a prompt); the number merged is printed too.
    """
    _check_format(source, allow_prompts=True)
    rows = read_rows(source.path, source.split, source.limit)
    if source.format == PROMPT_FORMAT or (source.format == "auto" and not _has_preference_columns(rows, source.path)):
        return _prompts_from_rows(rows, source.path)
    return _prompts_from_records(to_records(rows, source.format, source.path), source.path)


def _prompts_from_rows(rows: list[RawRow], path: str) -> list[Prompt]:
    columns = columns_of(rows)
    column = next((c for c in PROMPT_COLUMNS if c in columns), None) or next(
        (c for c in columns if c.lower() in {p.lower() for p in PROMPT_COLUMNS}), None)
    if column is None:
        raise DataFormatError(f"{path}: no prompt column (looked for {', '.join(PROMPT_COLUMNS)}); "
                              f"columns found: {', '.join(columns) or 'none'}")
    report = ValidationReport(policy="drop", need="prompts", total=len(rows))
    prompts = []
    for raw in rows:
        if raw.error:
            problems = [("unreadable_row", raw.error)]
        elif not isinstance(raw.row, dict):
            problems = [("wrong_type", f"row is a {type(raw.row).__name__}, not an object of columns")]
        else:
            problems = prompt_problems(raw.row.get(column))
        for reason, detail in problems:
            report.add(raw.location, reason, f"{column}: {detail}")
        if problems:
            report.rows_with_issues += 1
        else:
            prompts.append(raw.row[column])
    report.kept = len(prompts)
    _print_prompt_report(path, report)
    repeats = len(prompts) - len({json.dumps(p, sort_keys=True, ensure_ascii=False) for p in prompts})
    if repeats:  # kept: sampling a prompt twice as often may be meant; said, never silent
        print(f"[saferlhf] {path}: {repeats} prompt(s) repeat an earlier row (kept)", flush=True)
    return prompts


def _prompts_from_records(records: list[PreferenceRecord], path: str) -> list[Prompt]:
    report = ValidationReport(policy="drop", need="prompts", total=len(records))
    prompts, seen = [], set()
    for record in records:
        problems = check_record(record) if record.extra.get(ERRORS_KEY) else prompt_problems(record.prompt)
        for reason, detail in problems:
            report.add(record.source, reason, detail)
        if problems:
            report.rows_with_issues += 1
            continue
        key = json.dumps(record.prompt, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            prompts.append(record.prompt)
    report.kept = len(records) - report.rows_with_issues
    _print_prompt_report(path, report)
    if report.kept > len(prompts):
        print(f"[saferlhf] {path}: {report.kept - len(prompts)} repeated prompts merged "
              f"({len(prompts)} distinct prompts from {report.kept} pairs)", flush=True)
    return prompts


def _print_prompt_report(path: str, report: ValidationReport) -> None:
    if report.rows_with_issues:
        print(f"[saferlhf] load_prompts({path}): " + report.summary(), flush=True)


def _has_preference_columns(rows: list[RawRow], path: str) -> bool:
    if any(path.startswith(prefix) for prefix in KNOWN_IDS):
        return True
    columns = set(columns_of(rows))
    return {"response_0", "response_1"} <= columns or {"chosen", "rejected"} <= columns


def _check_format(source: DataSource, allow_prompts: bool) -> None:
    valid = FORMATS + ((PROMPT_FORMAT,) if allow_prompts else ())
    if source.format not in valid:
        hint = "" if allow_prompts or source.format != PROMPT_FORMAT else " ('prompts' is for prompt sources)"
        raise DataFormatError(f"{source.path}: unknown data format '{source.format}'{hint}; "
                              f"valid: {', '.join(valid)}")


BUILTIN = "builtin"


def load_prompt_source(source: DataSource) -> list:
    """Prompts of a source: ``builtin[:SPLIT[:LABEL]]`` names the package's built-in prompt set
    (:mod:`saferlhf.data.builtin`, e.g. ``builtin:heldout:harmful``); anything else goes to
    :func:`saferlhf.data.loading.load_prompts`."""
    if source.path != BUILTIN and not source.path.startswith(BUILTIN + ":"):
        return load_prompts(source)
    from saferlhf.data.builtin import builtin_prompts

    parts = source.path.split(":")[1:] + ["", ""]
    try:
        rows = builtin_prompts(split=parts[0] or None, label=parts[1] or None)
    except ValueError as error:
        raise ValueError(f"prompt source {source.path!r} (builtin:SPLIT:LABEL): {error}") from None
    return [row["prompt"] for row in rows][: source.limit or None]
