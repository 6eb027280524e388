"""Harm and over-refusal prompt sets: built-in names, local files, Hugging Face dataset ids.

Every set becomes a list of :class:`BenchmarkPrompt` with a ``label`` in :data:`PROMPT_LABELS`:
``harmful`` (the model should refuse), ``harmless`` (the model should answer; refusing is a false
refusal), ``controversial`` (PHTest's ambiguous tier: reported apart, counted in neither rate) or
``unlabelled`` (only refusal rates are reported).

Built-in names resolve by Hugging Face hub id (read with ``datasets.load_dataset``, so a pip install
needs no data folder); ``path`` overrides where the set is read from: a local file / folder (the
shipped configs and the tests use ``../shared/data``) or another hub id.

============== ============================================================ =====================
name           default hub id (local override format)                        labels
============== ============================================================ =====================
xstest         ``walledai/XSTest`` (Röttger 2024; or the repository's        ``label`` safe/unsafe,
               ``xstest_prompts.csv``, or ``natolambert/xstest-v2-copy``)    category = ``type``
advbench       ``walledai/AdvBench`` (Zou 2023; or ``harmful_behaviors.csv``) all harmful
harmbench      ``walledai/HarmBench`` configs ``standard`` + ``contextual``  all harmful; the
               (Mazeika 2024; or ``harmbench_behaviors_text_all.csv``)       copyright rows dropped
or-bench       ``bench-llm/or-bench``: ``or-bench-hard-1k`` +                hard-1k/80k harmless,
               ``or-bench-toxic`` (Cui 2024); also ``or-bench-hard-1k``,    toxic harmful
               ``or-bench-toxic``, ``or-bench-80k`` alone
phtest         ``furonghuang-lab/PHTest`` (An 2024), columns                ``Harmfulness``:
               ``Request``, ``Harmfulness``                                 harmless/controversial
============== ============================================================ =====================

``builtin``, ``builtin:SPLIT`` and ``builtin:SPLIT:LABEL`` (e.g. ``builtin:heldout:harmful``) are the
package's own prompts (benign and pseudo-harmful count as harmless).
``rmcbench``, ``civics`` and ``forbidden-science`` are read by :mod:`saferlhf.evaluation.extra_benchmarks`,
which also computes their own metrics.

Any other name is a csv / jsonl / json file (or a hub id) with a prompt column and optional label
and category columns. HarmBench contextual behaviours are shown to the model the way HarmBench's
DirectRequest baseline does: ``"{context}\\n\\n---\\n\\n{behavior}"``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

PROMPT_LABELS = ("harmful", "harmless", "controversial", "unlabelled")
SHARED_DATA = Path("../shared/data")  # where the shipped configs and the tests read local copies from
XSTEST_ID, ADVBENCH_ID, HARMBENCH_ID, PHTEST_ID = ("walledai/XSTest", "walledai/AdvBench", "walledai/HarmBench",
                                                   "furonghuang-lab/PHTest")
HARMBENCH_CONFIGS = ("standard", "contextual")  # the hub copy's subsets; "copyright" is left out as in the csv

PROMPT_COLUMNS = ("prompt", "goal", "behavior", "request", "instruction", "question", "query", "text")
LABEL_COLUMNS = ("label", "harmfulness", "harmful", "is_harmful", "safety")
CATEGORY_COLUMNS = ("category", "type", "semanticcategory", "harm_category")
LABEL_VALUES = {
    "harmful": "harmful", "unsafe": "harmful", "toxic": "harmful", "harm": "harmful", "true": "harmful",
    "harmless": "harmless", "safe": "harmless", "benign": "harmless", "false": "harmless",
    "pseudo_harmful": "harmless",  # the project's own labels (built-in prompts, experiments/data/minimal_pairs.jsonl)
    "controversial": "controversial",
}


class BenchmarkError(ValueError):
    """A benchmark file or row cannot be read; the message names the file, line and reason."""


@dataclass
class BenchmarkPrompt:
    prompt: str
    label: str  # one of PROMPT_LABELS
    category: str = ""
    id: str = ""
    source: str = ""  # "file:line" or "hub-id[config]:index"
    extra: dict = field(default_factory=dict)


@dataclass
class Benchmark:
    name: str
    prompts: list[BenchmarkPrompt]
    source: str
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count of rows left out
    kind: str = ""  # rmcbench | civics | forbidden-science: the set has its own metrics (extra_benchmarks)


def load_benchmark(name: str, path: str = "", limit: int = 0, label: str = "", prompt_column: str = "",
                   label_column: str = "", category_column: str = "") -> Benchmark:
    """Load a built-in set by name, or any csv/jsonl file / hub id given as ``name`` or ``path``.

    ``limit`` keeps the first N prompts after filtering (0 = all); ``label`` forces one label on
    every prompt of a set without a label column.
    """
    key = name.lower()
    if key == "xstest":
        bench = _generic(name, path or XSTEST_ID, prompt_column or "prompt", label_column or "label",
                         category_column or "type", label, rows=None if path else read_rows(XSTEST_ID, split=""))
    elif key == "advbench":
        bench = _generic(name, path or ADVBENCH_ID, prompt_column or ("goal" if path else "prompt"), label_column,
                         category_column, label or "harmful",
                         rows=None if path else read_rows(ADVBENCH_ID, split=""))
    elif key == "harmbench":
        bench = _harmbench(name, path) if path else _harmbench_hub(name)
    elif key in ("or-bench", "or-bench-hard-1k", "or-bench-toxic", "or-bench-80k"):
        bench = _or_bench(key, path)
    elif key == "builtin" or key.startswith("builtin:"):
        bench = _builtin(name)
    elif key in ("rmcbench", "civics", "forbidden-science"):
        from saferlhf.evaluation.extra_benchmarks import load_extra

        bench = load_extra(key, name, path)
    elif key == "phtest":
        bench = _generic(name, path or PHTEST_ID, prompt_column or "request",
                         label_column or "harmfulness", category_column, label)
    else:
        source = path or name
        shown = name if path else (Path(source).stem if Path(source).suffix else name)  # a name given with a path wins
        bench = _generic(shown, source, prompt_column, label_column, category_column, label)
    if limit:
        bench.prompts = bench.prompts[:limit]
    return bench


# --------------------------------------------------------------------------------------------
# Readers: local csv / jsonl / json, or a Hugging Face dataset id


def read_rows(source: str, config: str | None = None, split: str = "train") -> list[tuple[str, dict]]:
    """``(where, row)`` pairs from a local file or a hub dataset; ``where`` is "file:line" for errors.
    ``split=""`` reads a hub dataset's only split (hub copies move between ``train`` and ``test``)."""
    path = Path(source)
    if path.is_file():
        return _read_file(path)
    if path.exists():
        raise BenchmarkError(f"{source}: not a readable csv/jsonl/json file")
    if source.startswith((".", "/")) or path.suffix in (".csv", ".jsonl", ".json"):
        raise BenchmarkError(f"{source}: file not found (relative paths are read from {Path.cwd()}; "
                             "set the benchmark's path: to a local copy)")
    try:
        import datasets

        data = datasets.load_dataset(source, config, split=split or None)
    except Exception as error:  # no network, unknown id, ...
        raise BenchmarkError(f"{source}: not a local file and could not be loaded from the Hugging Face hub "
                             f"({type(error).__name__}: {error}); download it and pass its local path "
                             "(the benchmark's path: key)") from None
    if not split:
        if len(data) != 1:
            raise BenchmarkError(f"{source}: {len(data)} splits ({', '.join(data)}); expected one")
        data = next(iter(data.values()))
    tag = f"{source}[{config}]" if config else source
    return [(f"{tag}:{i}", dict(row)) for i, row in enumerate(data)]


def _read_file(path: Path) -> list[tuple[str, dict]]:
    """Rows of a local file through :mod:`saferlhf.data.readers` (one reader for every stage); a bad row stops
    the benchmark with its file and line (a benchmark is measured whole or not at all)."""
    from saferlhf.data.readers import read_file

    if path.suffix not in (".csv", ".jsonl", ".json"):
        raise BenchmarkError(f"{path}: unsupported file type '{path.suffix}' (use .csv, .jsonl or .json)")
    rows = []
    for raw in read_file(path):
        if raw.error:
            raise BenchmarkError(f"{raw.location}: {raw.error}")
        if not isinstance(raw.row, dict):
            raise BenchmarkError(f"{raw.location}: row is a {type(raw.row).__name__}, not an object of columns")
        rows.append((raw.location, raw.row))
    return rows


def _find_column(row: dict, wanted: str, candidates: tuple[str, ...], where: str, what: str) -> str | None:
    by_lower = {str(k).lower(): k for k in row}
    if wanted:
        if wanted.lower() not in by_lower:
            raise BenchmarkError(f"{where}: no {what} column '{wanted}' (columns: {', '.join(map(str, row))})")
        return by_lower[wanted.lower()]
    for candidate in candidates:
        if candidate in by_lower:
            return by_lower[candidate]
    return None


def parse_label(value, where: str) -> str:
    """Map a label cell (safe/unsafe, harmless/harmful, benign/toxic, controversial) to PROMPT_LABELS."""
    text = str(value).strip().lower()
    if text in LABEL_VALUES:
        return LABEL_VALUES[text]
    raise BenchmarkError(f"{where}: unknown label {value!r} (expected one of {', '.join(sorted(LABEL_VALUES))})")


def _generic(name: str, source: str, prompt_column: str, label_column: str, category_column: str,
             forced_label: str, rows: list[tuple[str, dict]] | None = None) -> Benchmark:
    if forced_label and forced_label not in PROMPT_LABELS:
        raise BenchmarkError(f"benchmark '{name}': label {forced_label!r} is not one of {', '.join(PROMPT_LABELS)}")
    rows = read_rows(source) if rows is None else rows
    if not rows:
        raise BenchmarkError(f"{source}: no rows")
    where0, first = rows[0]
    prompt_key = _find_column(first, prompt_column, PROMPT_COLUMNS, where0, "prompt")
    if prompt_key is None:
        raise BenchmarkError(f"{where0}: no prompt column (looked for {', '.join(PROMPT_COLUMNS)}; "
                             f"columns: {', '.join(map(str, first))}); set prompt_column")
    label_key = None if forced_label else _find_column(first, label_column, LABEL_COLUMNS, where0, "label")
    category_key = _find_column(first, category_column, CATEGORY_COLUMNS, where0, "category")
    prompts, skipped = [], {}
    for index, (where, row) in enumerate(rows):
        text = row.get(prompt_key)
        if text is not None and not isinstance(text, str):
            raise BenchmarkError(f"{where}: prompt is a {type(text).__name__}, expected a string")
        if text is None or not text.strip():
            skipped["empty prompt"] = skipped.get("empty prompt", 0) + 1
            continue
        label = forced_label or (parse_label(row.get(label_key), where) if label_key else "unlabelled")
        category = str(row.get(category_key) or "") if category_key else ""
        extra = {k: v for k, v in row.items() if k not in (prompt_key, label_key, category_key)}
        prompts.append(BenchmarkPrompt(str(text), label, category, str(row.get("id", row.get("ID", index))), where, extra))
    return Benchmark(name, prompts, source, skipped)


def _harmbench(name: str, source: str) -> Benchmark:
    prompts, skipped = [], {}
    for where, row in read_rows(source):
        missing = [c for c in ("Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID") if c not in row]
        if missing:
            raise BenchmarkError(f"{where}: not a HarmBench behaviours file (missing {', '.join(missing)})")
        if row["FunctionalCategory"] == "copyright":
            skipped["copyright"] = skipped.get("copyright", 0) + 1
            continue
        context = (row.get("ContextString") or "").strip()
        text = f"{context}\n\n---\n\n{row['Behavior']}" if context else row["Behavior"]
        prompts.append(BenchmarkPrompt(text, "harmful", row["SemanticCategory"], row["BehaviorID"], where,
                                       {"functional_category": row["FunctionalCategory"]}))
    return Benchmark(name, prompts, source, skipped)


def _builtin(name: str) -> Benchmark:
    """``builtin[:SPLIT[:LABEL]]``: the package's own prompts (:mod:`saferlhf.data.builtin`); benign and
    pseudo-harmful prompts are harmless, the category is the built-in one."""
    from saferlhf.data.builtin import BUILTIN_PROMPTS_PATH, builtin_prompts

    parts = name.split(":")[1:]
    if len(parts) > 2:
        raise BenchmarkError(f"benchmark '{name}': expected builtin, builtin:SPLIT or builtin:SPLIT:LABEL")
    try:
        rows = builtin_prompts(split=parts[0] if parts and parts[0] else None,
                               label=parts[1] if len(parts) > 1 else None)
    except ValueError as error:
        raise BenchmarkError(f"benchmark '{name}': {error}") from None
    return Benchmark(name, [BenchmarkPrompt(r["prompt"], "harmful" if r["label"] == "harmful" else "harmless",
                                            r["category"], r["id"], f"{BUILTIN_PROMPTS_PATH}:{r['id']}",
                                            {"builtin_label": r["label"]}) for r in rows], str(BUILTIN_PROMPTS_PATH))


def _harmbench_hub(name: str) -> Benchmark:
    """HarmBench from the hub copy: columns ``prompt``, ``category`` (and ``context`` in ``contextual``), shown
    as the csv's contextual behaviours are."""
    prompts = []
    for config in HARMBENCH_CONFIGS:
        for index, (where, row) in enumerate(read_rows(HARMBENCH_ID, config=config, split="")):
            if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
                raise BenchmarkError(f"{where}: no 'prompt' text (columns: {', '.join(map(str, row))})")
            context = (row.get("context") or "").strip()
            text = f"{context}\n\n---\n\n{row['prompt']}" if context else row["prompt"]
            prompts.append(BenchmarkPrompt(text, "harmful", str(row.get("category") or ""), f"{config}-{index}", where,
                                           {"functional_category": config}))
    return Benchmark(name, prompts, f"{HARMBENCH_ID}[{', '.join(HARMBENCH_CONFIGS)}]")


OR_BENCH_ID = "bench-llm/or-bench"
_OR_BENCH_PARTS = {"or-bench-hard-1k": "harmless", "or-bench-toxic": "harmful", "or-bench-80k": "harmless"}


def _or_bench(key: str, path: str) -> Benchmark:
    """OR-Bench (Cui et al. 2024): csv files ``prompt,category``; the label comes from the subset."""
    parts = ["or-bench-hard-1k", "or-bench-toxic"] if key == "or-bench" else [key]
    prompts, sources = [], []
    for part in parts:
        if path and Path(path).is_dir():
            source, rows = str(Path(path) / f"{part}.csv"), None
        elif path and Path(path).is_file():
            if len(parts) > 1:
                raise BenchmarkError(f"{path}: 'or-bench' needs a folder holding or-bench-hard-1k.csv and "
                                     "or-bench-toxic.csv (or name one subset: or-bench-hard-1k / or-bench-toxic)")
            source, rows = path, None
        else:
            source = path or OR_BENCH_ID
            rows = read_rows(source, config=part)
        bench = _generic(part, source, "prompt", "", "category", _OR_BENCH_PARTS[part], rows=rows)
        prompts += bench.prompts
        sources.append(source)
    return Benchmark(key, prompts, " + ".join(sources))
