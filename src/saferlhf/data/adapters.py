"""Map the rows of known preference formats onto :class:`PreferenceRecord` (Safe RLHF section 1).

Formats (``DataSource.format``):

- ``pku-saferlhf`` / ``decoupled``: ``prompt, response_0, response_1`` plus any of
  ``better_response_id, safer_response_id, is_response_{0,1}_safe, response_{0,1}_harm_category,
  response_{0,1}_severity_level`` (PKU-SafeRLHF, by id ``PKU-Alignment/PKU-SafeRLHF`` or a local
  copy). Absent labels stay ``None``; other columns are kept in ``record.extra``.
- ``hh-rlhf-harmless`` / ``hh-rlhf-helpful`` (``hh-rlhf`` picks one from a ``harmless-base`` /
  ``helpful-*`` part of the path): Anthropic ``chosen``/``rejected`` transcripts
  (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``). The prompt is the shared conversation up to the last
  Human turn, as chat messages; the final Assistant turns are the responses. Harmless-base ranks
  harmlessness only (``safer_response_id``), helpful-base helpfulness only (``better_response_id``).
- ``trl`` / ``trl-harmless``: TRL's ``prompt``/``chosen``/``rejected`` columns, standard (strings)
  or conversational (message lists; without a ``prompt`` column the shared prefix of ``chosen`` and
  ``rejected`` is the prompt). ``trl`` gives ``better_response_id``; ``trl-harmless`` reads the same
  columns as a harmlessness ranking (``safer_response_id``).
- ``trl-unpaired``: TRL's unpaired (KTO) ``prompt``/``completion``/``label`` rows, strings or
  conversational; ``label`` true = desirable, read as **safe** (``is_response_0_safe``): one
  response, no ranking (``record.unpaired``), for the cost model's sign term.
- ``beavertails``: BeaverTails-style absolute labels (``PKU-Alignment/BeaverTails``): ``prompt``,
  ``response``, ``is_safe`` and ``category`` (a mapping harm category -> true/false); unpaired too.
- ``auto``: known dataset ids first (:data:`KNOWN_IDS`), else the columns decide:
  ``response_0``/``response_1`` -> decoupled; ``prompt``/``chosen``/``rejected`` -> trl;
  ``chosen``/``rejected`` transcripts with Human/Assistant turns -> hh-rlhf;
  ``prompt``/``completion``/``label`` -> trl-unpaired; ``prompt``/``response``/``is_safe`` -> beavertails.

Chosen is always ``response_0`` and rejected ``response_1`` (ids 0), so a record points back at
its row. Rows that cannot become a record (unparseable, not an object, a required column missing,
a malformed transcript) become a placeholder record with ``extra["_errors"] = [(reason, detail)]``;
:func:`saferlhf.data.validation.validate_records` reports those and never keeps them. Values are
not type-checked here (validation does that); CSV strings are turned into ints / booleans / JSON
where they parse, so that ``"1"`` and ``"true"`` in a CSV cell mean what they say.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

from saferlhf.data.readers import DataFormatError, RawRow, columns_of
from saferlhf.data.records import PreferenceRecord

FORMATS = ("auto", "pku-saferlhf", "decoupled", "hh-rlhf", "hh-rlhf-harmless", "hh-rlhf-helpful",
           "trl", "trl-harmless", "trl-unpaired", "beavertails")
KNOWN_IDS = {  # dataset id prefix -> format
    "PKU-Alignment/PKU-SafeRLHF": "pku-saferlhf",
    "Anthropic/hh-rlhf": "hh-rlhf",
    "PKU-Alignment/BeaverTails": "beavertails",
}
LABEL_COLUMNS = ("better_response_id", "safer_response_id", "is_response_0_safe", "is_response_1_safe",
                 "response_0_harm_category", "response_1_harm_category",
                 "response_0_severity_level", "response_1_severity_level")
ERRORS_KEY = "_errors"
_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")


class RowError(Exception):
    """One row cannot become a record; ``reason`` is a validation reason key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def unusable_record(location: str, reason: str, detail: str) -> PreferenceRecord:
    """Placeholder for a row that could not be read; validation reports and removes it."""
    return PreferenceRecord(prompt="", response_0="", response_1="", source=location,
                            extra={ERRORS_KEY: [(reason, detail)]})


def to_records(rows: list[RawRow], format: str, path: str) -> list[PreferenceRecord]:
    """One record per raw row (placeholders for bad rows), in the source's order."""
    adapter = ADAPTERS[resolve_format(format, path, rows)]
    records = []
    for raw in rows:
        if raw.error:
            records.append(unusable_record(raw.location, "unreadable_row", raw.error))
        elif not isinstance(raw.row, dict):
            records.append(unusable_record(raw.location, "wrong_type",
                                           f"row is a {type(raw.row).__name__}, not an object of columns"))
        else:
            try:
                records.append(adapter(raw.row, raw.location))
            except RowError as error:
                records.append(unusable_record(raw.location, error.reason, error.detail))
    return records


# --------------------------------------------------------------------------------------------
# Format detection


def resolve_format(format: str, path: str, rows: list[RawRow]) -> str:
    """The concrete adapter name for a source (raises :class:`DataFormatError` when unknown)."""
    if format not in FORMATS:
        raise DataFormatError(f"{path}: unknown preference format '{format}' (valid: {', '.join(FORMATS)})")
    if format == "auto":
        format = next((f for prefix, f in KNOWN_IDS.items() if path.startswith(prefix)), "") or detect_format(rows, path)
    if format == "pku-saferlhf":
        return "decoupled"
    if format == "hh-rlhf":
        if "harmless-base" in path:
            return "hh-rlhf-harmless"
        if "helpful-" in path:
            return "hh-rlhf-helpful"
        raise DataFormatError(f"{path}: cannot tell hh-rlhf harmless-base from helpful-base data; use a path "
                              f"with 'harmless-base' or 'helpful-base' in it (for the hub: "
                              f"Anthropic/hh-rlhf/harmless-base) or format hh-rlhf-harmless / hh-rlhf-helpful")
    return format


def detect_format(rows: list[RawRow], path: str) -> str:
    """Preference format from column names (and, for chosen/rejected, the first value's shape)."""
    if not rows:
        raise DataFormatError(f"{path}: no rows to read")
    columns = columns_of(rows)
    if {"response_0", "response_1"} <= set(columns):
        return "decoupled"
    if {"chosen", "rejected"} <= set(columns):
        if "prompt" in columns:
            return "trl"
        first = next((r.row["chosen"] for r in rows if isinstance(r.row, dict) and "chosen" in r.row), None)
        if isinstance(first, list):
            return "trl"
        if isinstance(first, str) and _TURN.search(first):
            return "hh-rlhf"
    if {"prompt", "completion", "label"} <= set(columns):
        return "trl-unpaired"
    if {"prompt", "response", "is_safe"} <= set(columns):
        return "beavertails"
    raise DataFormatError(f"{path}: cannot detect a preference format from columns {columns or '(none)'}; "
                          f"expected prompt/response_0/response_1 (PKU-SafeRLHF), prompt/chosen/rejected "
                          f"(TRL) or chosen/rejected Human/Assistant transcripts (hh-rlhf), prompt/completion/label (TRL "
                          f"unpaired) or prompt/response/is_safe (BeaverTails)")


# --------------------------------------------------------------------------------------------
# Adapters: row dict -> PreferenceRecord (raise RowError for unusable rows)


def from_decoupled(row: dict, location: str) -> PreferenceRecord:
    _require(row, ("prompt", "response_0", "response_1"))
    labels = {
        "better_response_id": as_int(row.get("better_response_id")),
        "safer_response_id": as_int(row.get("safer_response_id")),
        "is_response_0_safe": as_bool(row.get("is_response_0_safe")),
        "is_response_1_safe": as_bool(row.get("is_response_1_safe")),
        "response_0_harm_category": _as_json(row.get("response_0_harm_category")),
        "response_1_harm_category": _as_json(row.get("response_1_harm_category")),
        "response_0_severity_level": as_int(row.get("response_0_severity_level")),
        "response_1_severity_level": as_int(row.get("response_1_severity_level")),
    }
    known = {"prompt", "response_0", "response_1", *LABEL_COLUMNS}
    extra = {key: value for key, value in row.items() if key not in known}
    return PreferenceRecord(prompt=_as_messages(row["prompt"]), response_0=row["response_0"],
                            response_1=row["response_1"], source=location, extra=extra, **labels)


def parse_transcript(text: Any, column: str) -> list[dict]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b"`` -> ``[{"role": "user", "content": "a"}, {"role": "assistant", ...}]``."""
    if not isinstance(text, str):
        raise RowError("wrong_type", f"{column} is a {type(text).__name__}, expected a transcript string")
    parts = _TURN.split(text)
    if parts[0].strip():
        raise RowError("malformed_transcript", f"{column} has text before its first Human/Assistant turn")
    roles = ["user" if speaker == "Human" else "assistant" for speaker in parts[1::2]]
    if "user" not in roles:
        raise RowError("malformed_transcript", f"{column} has no Human turn")
    if roles[-1] != "assistant":
        raise RowError("malformed_transcript", f"{column} does not end with an Assistant turn")
    return [{"role": role, "content": content.strip()} for role, content in zip(roles, parts[2::2])]


def from_hh_rlhf(row: dict, location: str, harmless: bool) -> PreferenceRecord:
    _require(row, ("chosen", "rejected"))
    chosen = parse_transcript(row["chosen"], "chosen")
    rejected = parse_transcript(row["rejected"], "rejected")
    prompt = _shared_prompt(chosen, rejected)
    return _ranked_pair(prompt, chosen[-1]["content"], rejected[-1]["content"], location, harmless)


def from_trl(row: dict, location: str, harmless: bool) -> PreferenceRecord:
    _require(row, ("chosen", "rejected"))
    prompt, chosen, rejected = _as_messages(row.get("prompt")), row["chosen"], row["rejected"]
    if prompt is None:  # TRL "implicit prompt": conversational chosen/rejected sharing their prefix
        if not (isinstance(chosen, list) and isinstance(rejected, list) and chosen and rejected):
            raise RowError("missing_field", "prompt (required unless chosen/rejected are message lists "
                                            "that share the prompt)")
        prompt = _shared_prompt(chosen, rejected)
        chosen, rejected = chosen[-1:], rejected[-1:]
    extra = {key: value for key, value in row.items() if key not in ("prompt", "chosen", "rejected")}
    record = _ranked_pair(prompt, _completion(chosen, "chosen"), _completion(rejected, "rejected"),
                          location, harmless)
    record.extra = extra
    return record


def from_unpaired(row: dict, location: str, response_key: str, label_key: str) -> PreferenceRecord:
    """One response with an absolute safety label (TRL unpaired: ``label``; BeaverTails: ``is_safe``)."""
    _require(row, ("prompt", response_key))
    response = _completion(row[response_key], response_key)
    is_safe = as_bool(row.get(label_key))
    categories = _as_json(row.get("category"))
    known = {"prompt", response_key, label_key, "category"}
    return PreferenceRecord(prompt=_as_messages(row["prompt"]), response_0=response, response_1=response,
                            is_response_0_safe=is_safe, is_response_1_safe=is_safe,
                            response_0_harm_category=categories, response_1_harm_category=categories,
                            unpaired=True, source=location, extra={k: v for k, v in row.items() if k not in known})


ADAPTERS: dict[str, Callable[[dict, str], PreferenceRecord]] = {
    "decoupled": from_decoupled,
    "hh-rlhf-harmless": lambda row, location: from_hh_rlhf(row, location, harmless=True),
    "hh-rlhf-helpful": lambda row, location: from_hh_rlhf(row, location, harmless=False),
    "trl": lambda row, location: from_trl(row, location, harmless=False),
    "trl-harmless": lambda row, location: from_trl(row, location, harmless=True),
    "trl-unpaired": lambda row, location: from_unpaired(row, location, "completion", "label"),
    "beavertails": lambda row, location: from_unpaired(row, location, "response", "is_safe"),
}


def _ranked_pair(prompt, chosen: str, rejected: str, location: str, harmless: bool) -> PreferenceRecord:
    """chosen = response 0, rejected = response 1; the ranking is harmlessness or helpfulness."""
    return PreferenceRecord(prompt=prompt, response_0=chosen, response_1=rejected, source=location,
                            safer_response_id=0 if harmless else None,
                            better_response_id=None if harmless else 0)


def _shared_prompt(chosen: list, rejected: list) -> list:
    """The messages before the final turn, which chosen and rejected must share."""
    if chosen[:-1] != rejected[:-1]:
        turn = next(i for i, (a, b) in enumerate(zip(chosen + [None], rejected + [None])) if a != b) + 1
        raise RowError("malformed_transcript",
                       f"chosen ({len(chosen)} turns) and rejected ({len(rejected)} turns) differ at turn {turn}, "
                       f"before their final answer (often a response that itself contains a 'Human:' turn)")
    return chosen[:-1]


def _completion(value: Any, column: str) -> Any:
    """A TRL completion: a string, or a list holding one assistant message."""
    if not isinstance(value, list):
        return value  # strings pass; other types are reported by validation (wrong_type)
    if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
        raise RowError("malformed_transcript", f"{column} must be one assistant message, got {len(value)} "
                                               f"message(s)")
    return value[0].get("content")


def _require(row: dict, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if row.get(c) is None]
    if missing:
        raise RowError("missing_field", f"{', '.join(missing)} missing (columns present: "
                                        f"{', '.join(k for k in row if row[k] is not None) or 'none'})")


# --------------------------------------------------------------------------------------------
# Lenient conversion of text cells (CSV) and floats (pandas-written parquet); anything else as is


def as_int(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if re.fullmatch(r"[+-]?\d+(\.0*)?", text):
            return int(float(text))
    return value


def as_bool(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
    return value


def _as_json(value: Any) -> Any:
    """A JSON object written into a text cell (harm categories in a CSV file)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _as_messages(value: Any) -> Any:
    """A conversational prompt written into a text cell as a JSON list of messages; else as is."""
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        if all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
    return value
