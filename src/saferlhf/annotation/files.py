"""The two files of human annotation: the pairs of a round, and the labels given to them.

**Pairs file** (``export_pairs``; JSON Lines, one pair per line)::

    {"id": "r1-0007", "prompt": "...", "response_0": "...", "response_1": "...", <any other keys>}

``prompt`` is a string or a list of chat messages (as in :class:`~saferlhf.data.records.PreferenceRecord`).
Ids are strings or integers, unique in the file; a pair without one gets its 0-based position.

**Labels file** (``<pairs stem>.labels.jsonl`` next to the pairs file; written by the annotation page)::

    {"id": "r1-0007", "better_response_id": 1, "safer_response_id": 0,
     "is_response_0_safe": true, "is_response_1_safe": false,
     "skipped": false, "pair_sha256": "3f2a...", "updated": "2025-01-01T12:00:00+00:00"}

One line per pair that has at least one answer (or was skipped), in the order of the pairs file;
a question not answered yet is ``null``. ``pair_sha256`` fingerprints the prompt and both answers,
so labels are never matched to a pair that was re-exported with different text. The whole file
is rewritten atomically (temporary file, fsync, rename) after every answer.

``import_labels`` merges the two into PreferenceRecords (``extra["annotator"] = "human"``) and
reports pairs that are not fully labelled, by id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from saferlhf.data.records import PreferenceRecord
from saferlhf.runio import atomic_write_text

ANSWER_KEYS = ("better_response_id", "safer_response_id", "is_response_0_safe", "is_response_1_safe")
CHOICE_KEYS = ("better_response_id", "safer_response_id")  # 0 or 1
FLAG_KEYS = ("is_response_0_safe", "is_response_1_safe")  # true or false
UPDATE_KEYS = ("id", *ANSWER_KEYS, "skipped")  # what the page may send
ENTRY_KEYS = (*UPDATE_KEYS, "pair_sha256", "updated")  # what a line of the labels file may hold
# PreferenceRecord label fields: an exported pair must not carry them (it is unlabelled).
RECORD_LABEL_KEYS = tuple(f.name for f in dataclasses.fields(PreferenceRecord)
                          if f.name not in ("prompt", "response_0", "response_1", "source", "extra"))
MAX_IDS_SHOWN = 20


class AnnotationError(ValueError):
    """A pairs file, labels file or label update is malformed; the message names file, line and key."""


class IncompleteLabelsError(AnnotationError):
    """Some pairs are unlabelled or only partly labelled; ``unlabelled`` and ``partial`` hold their ids."""

    def __init__(self, message: str, unlabelled: list, partial: list):
        super().__init__(message)
        self.unlabelled, self.partial = unlabelled, partial


def labels_path_for(pairs_path: str | Path) -> Path:
    """``round1.jsonl`` -> ``round1.labels.jsonl`` (same folder)."""
    pairs_path = Path(pairs_path)
    stem = pairs_path.name[: -len(".jsonl")] if pairs_path.name.endswith(".jsonl") else pairs_path.name
    return pairs_path.with_name(stem + ".labels.jsonl")


def pair_fingerprint(pair: dict) -> str:
    """First 16 hex digits of SHA-256 over the prompt and both answers."""
    text = json.dumps([pair["prompt"], pair["response_0"], pair["response_1"]], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_pair(pair: Any, where: str, need_id: bool = True) -> None:
    """Raise AnnotationError unless ``pair`` is an unlabelled pair: prompt, two string answers, an id."""
    if not isinstance(pair, dict):
        raise AnnotationError(f"{where}: a pair must be a JSON object, got {type(pair).__name__}")
    for key in ("prompt", "response_0", "response_1") + (("id",) if need_id else ()):
        if key not in pair or pair[key] is None:
            raise AnnotationError(f"{where}: missing key '{key}'")
    if "id" in pair and (isinstance(pair["id"], bool) or not isinstance(pair["id"], (str, int)) or pair["id"] == ""):
        raise AnnotationError(f"{where}: key 'id' must be a non-empty string or an integer, got {pair['id']!r}")
    prompt = pair["prompt"]
    messages_ok = isinstance(prompt, list) and prompt and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt)
    if not isinstance(prompt, str) and not messages_ok:
        raise AnnotationError(f"{where}: key 'prompt' must be a string or a list of {{role, content}} messages")
    for key in ("response_0", "response_1"):
        if not isinstance(pair[key], str):
            raise AnnotationError(f"{where}: key '{key}' must be a string, got {type(pair[key]).__name__}")
    labelled = [key for key in RECORD_LABEL_KEYS if pair.get(key) is not None]
    if labelled:
        raise AnnotationError(f"{where}: pair already has label key '{labelled[0]}'; export unlabelled pairs "
                              "(drop the label keys or set them to null)")


def export_pairs(pairs: list[dict], path: str | Path) -> Path:
    """Write unlabelled pairs to a JSON Lines file for the annotation page; returns the path.

    Every key of a pair is kept except label keys set to null; a pair without ``id`` gets its
    0-based position. A pair with a label that is not null is refused, and so is writing next to
    an existing labels file, which would attach old labels to new pairs.
    """
    path = Path(path)
    labels = labels_path_for(path)
    if labels.exists():
        raise AnnotationError(f"{labels} exists: exporting new pairs to {path} would mix them with its labels; "
                              "move the labels file away or export to another path")
    rows, seen = [], {}
    for index, pair in enumerate(pairs):
        row = dict(pair)
        row.setdefault("id", index)
        check_pair(row, f"pair #{index}")
        row = {key: value for key, value in row.items() if key not in RECORD_LABEL_KEYS}  # all None here
        if row["id"] in seen:
            raise AnnotationError(f"pair #{index}: duplicate id {row['id']!r} (also pair #{seen[row['id']]})")
        seen[row["id"]] = index
        rows.append(row)
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    return path


def _read_jsonl(path: Path, what: str) -> list[tuple[int, Any]]:
    if not path.is_file():
        raise AnnotationError(f"{what} file not found: {path}")
    rows = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise AnnotationError(f"{path}:{number}: not UTF-8 text (byte {error.start + 1} of the line)") from None
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            raise AnnotationError(f"{path}:{number}: not JSON ({error.msg})") from None
        except RecursionError:
            raise AnnotationError(f"{path}:{number}: not JSON this reads (nested too deeply)") from None
    return rows


def read_pairs(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, pair) for every pair of a pairs file, checked; errors name ``file:line``."""
    path = Path(path)
    rows, seen = _read_jsonl(path, "pairs"), {}
    for number, pair in rows:
        check_pair(pair, f"{path}:{number}")
        if pair["id"] in seen:
            raise AnnotationError(f"{path}:{number}: duplicate id {pair['id']!r} (also on line {seen[pair['id']]})")
        seen[pair["id"]] = number
    return rows


def check_label_update(data: Any, pairs_by_id: dict, allowed: tuple[str, ...] = UPDATE_KEYS) -> tuple[Any, dict]:
    """(pair id, changed fields) of one update sent by the page or one labels-file line.

    Choices must be 0, 1 or null, safety flags true, false or null; raises AnnotationError with the reason.
    """
    if not isinstance(data, dict):
        raise AnnotationError(f"a label must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise AnnotationError(f"unknown key '{unknown[0]}' (allowed keys: {', '.join(allowed)})")
    if "id" not in data:
        raise AnnotationError("missing key 'id'")
    pair_id = data["id"]
    if isinstance(pair_id, bool) or not isinstance(pair_id, (str, int)) or pair_id not in pairs_by_id:
        raise AnnotationError(f"unknown pair id {pair_id!r}")
    for key, value in data.items():
        if key in CHOICE_KEYS and not (value is None or (type(value) is int and value in (0, 1))):
            raise AnnotationError(f"'{key}' must be 0, 1 or null, got {value!r}")
        if key in FLAG_KEYS + ("skipped",) and not (value is None or isinstance(value, bool)):
            raise AnnotationError(f"'{key}' must be true, false or null, got {value!r}")
        if key in ("pair_sha256", "updated") and not isinstance(value, str):
            raise AnnotationError(f"'{key}' must be a string, got {value!r}")
    return pair_id, {key: value for key, value in data.items() if key != "id"}


def new_entry(pair: dict) -> dict:
    """A labels-file line with no answer yet."""
    return {"id": pair["id"], **{key: None for key in ANSWER_KEYS}, "skipped": False,
            "pair_sha256": pair_fingerprint(pair), "updated": ""}


def apply_update(entry: dict, changes: dict) -> dict:
    """``entry`` with ``changes``; answering a question clears ``skipped``; stamps the time."""
    entry = {**entry, **changes}
    if "skipped" not in changes and any(changes.get(key) is not None for key in ANSWER_KEYS):
        entry["skipped"] = False
    entry["skipped"] = bool(entry.get("skipped"))
    entry["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return entry


def is_complete(entry: dict | None) -> bool:
    return entry is not None and all(entry.get(key) is not None for key in ANSWER_KEYS)


def read_labels(labels_path: str | Path, pairs: list[dict]) -> dict:
    """Pair id -> labels-file entry; a missing file is no labels. Errors name ``file:line``."""
    labels_path = Path(labels_path)
    if not labels_path.exists():
        return {}
    by_id = {pair["id"]: pair for pair in pairs}
    labels, lines = {}, {}
    for number, data in _read_jsonl(labels_path, "labels"):
        try:
            pair_id, changes = check_label_update(data, by_id, ENTRY_KEYS)
        except AnnotationError as error:
            raise AnnotationError(f"{labels_path}:{number}: {error}") from None
        if pair_id in labels:
            raise AnnotationError(f"{labels_path}:{number}: second entry for pair id {pair_id!r} "
                                  f"(first on line {lines[pair_id]})")
        fingerprint = pair_fingerprint(by_id[pair_id])
        if changes.get("pair_sha256", fingerprint) != fingerprint:
            raise AnnotationError(f"{labels_path}:{number}: pair id {pair_id!r} has changed since it was labelled "
                                  "(its prompt or answers differ); remove the line or label the pair again")
        entry = {**new_entry(by_id[pair_id]), **changes}
        entry["skipped"] = bool(entry["skipped"])
        labels[pair_id], lines[pair_id] = entry, number
    return labels


def write_labels(labels_path: str | Path, pairs: list[dict], labels: dict) -> None:
    """Rewrite the labels file atomically (temporary file, fsync, rename), in the order of the pairs."""
    rows = [labels[pair["id"]] for pair in pairs if pair["id"] in labels]
    atomic_write_text(labels_path, "".join(json.dumps(row) + "\n" for row in rows))


def _ids_text(ids: list) -> str:
    shown = ", ".join(repr(i) for i in ids[:MAX_IDS_SHOWN])
    return shown + (f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else "")


def import_labels(pairs_path: str | Path, labels_path: str | Path | None = None,
                  require_complete: bool = True) -> list[PreferenceRecord]:
    """PreferenceRecords for the labelled pairs of a round, in the order of the pairs file.

    A pair needs all four answers. Pairs without (unlabelled) or with only some (partly labelled)
    raise :class:`IncompleteLabelsError` naming the file and their ids when ``require_complete``;
    otherwise they are left out and their number and ids are printed. ``record.source`` is
    ``pairs_file:line``; the pair's other keys (``id`` included) go to ``record.extra``.
    """
    pairs_path = Path(pairs_path)
    labels_path = Path(labels_path) if labels_path else labels_path_for(pairs_path)
    numbered = read_pairs(pairs_path)
    labels = read_labels(labels_path, [pair for _, pair in numbered])
    records, unlabelled, partial = [], [], []
    for number, pair in numbered:
        entry = labels.get(pair["id"])
        if not is_complete(entry):
            answered = entry is not None and any(entry[key] is not None for key in ANSWER_KEYS)
            (partial if answered else unlabelled).append(pair["id"])
            continue
        extra = {key: value for key, value in pair.items() if key not in ("prompt", "response_0", "response_1")}
        records.append(PreferenceRecord(
            prompt=pair["prompt"], response_0=pair["response_0"], response_1=pair["response_1"],
            **{key: entry[key] for key in ANSWER_KEYS},
            source=f"{pairs_path}:{number}", extra={**extra, "annotator": "human", "labelled_at": entry["updated"]}))
    if unlabelled or partial:
        missing = "" if labels_path.exists() else f" (labels file {labels_path} does not exist)"
        parts = [f"{len(unlabelled)} unlabelled (ids {_ids_text(unlabelled)})" if unlabelled else "",
                 f"{len(partial)} partly labelled (ids {_ids_text(partial)})" if partial else ""]
        detail = "; ".join(p for p in parts if p)
        if require_complete:
            raise IncompleteLabelsError(f"{labels_path}: {len(unlabelled) + len(partial)} of {len(numbered)} pairs of "
                                        f"{pairs_path} are not fully labelled{missing}: {detail}", unlabelled, partial)
        print(f"[saferlhf annotate] {labels_path}: importing {len(records)} of {len(numbered)} pairs; "
              f"left out {detail}{missing}", flush=True)
    return records
