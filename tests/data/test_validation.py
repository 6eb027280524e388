"""Validation: every reason from small bad jsonl / csv / json files, named by file:line; the policies."""

from __future__ import annotations

import csv
import json

import pytest

from saferlhf.config import DataSource
from saferlhf.data.loading import load_records
from saferlhf.data.records import PreferenceRecord
from saferlhf.data.validation import (REASONS, UNUSABLE, DataValidationError, ValidationReport, check_record,
                                      validate_records)

from .files import MISSING, good_row, write_jsonl

MAX_LENGTH = 32
LONG = "word " * 100  # far more than MAX_LENGTH tokens
ASSISTANT_LAST = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]

# (reason, row) in file order; None = a good row. Row 0 of each list is good.
JSONL_ROWS = [
    (None, good_row(0)),
    ("missing_field", good_row(1, response_1=MISSING)),
    ("wrong_type", good_row(2, response_0=5)),
    ("empty_response", good_row(3, response_1="  ")),
    ("id_not_binary", good_row(4, better_response_id=2)),
    ("identical_responses", good_row(5, response_1="answer A5")),
    ("unsafe_safer_response", good_row(6, safer_response_id=0)),  # response 0: unsafe, response 1: safe
    ("missing_label", good_row(7, better_response_id=MISSING, safer_response_id=MISSING)),
    ("unreadable_row", '{"prompt": "unterminated'),
    ("empty_prompt", good_row(9, prompt="")),
    ("malformed_transcript", good_row(10, prompt=ASSISTANT_LAST)),
    ("overlong", good_row(11, response_0=LONG)),
    (None, good_row(12)),
]
CSV_COLUMNS = list(good_row())
CSV_ROWS = [  # raw cells; the header is line 1
    (None, ["q0", "a", "b", "0", "1", "false", "true"]),
    ("missing_field", ["q1", "a"]),
    ("wrong_type", ["q2", "a", "b", "0", "1", "maybe", "true"]),
    ("empty_response", ["q3", "", "b", "0", "1", "false", "true"]),
    ("id_not_binary", ["q4", "a", "b", "0", "3", "false", "true"]),
    ("identical_responses", ["q5", "same", " same ", "0", "1", "false", "true"]),
    ("unsafe_safer_response", ["q6", "a", "b", "1", "1", "true", "false"]),
    ("missing_label", ["q7", "a", "b", "", "", "false", "true"]),
    ("unreadable_row", ["q8", "a", "b", "0", "1", "false", "true", "surplus"]),
    ("empty_prompt", [" ", "a", "b", "0", "1", "false", "true"]),
    ("malformed_transcript", [json.dumps(ASSISTANT_LAST), "a", "b", "0", "1", "false", "true"]),
    ("overlong", ["q11", "a", LONG, "0", "1", "false", "true"]),
    (None, ["q12", "a", "b", "1", "0", "true", "true"]),
]
JSON_ROWS = [
    (None, good_row(0)),
    ("missing_field", good_row(1, prompt=MISSING)),
    ("wrong_type", good_row(2, better_response_id=True)),
    ("empty_response", good_row(3, response_0="")),
    ("id_not_binary", good_row(4, safer_response_id=-1)),
    ("identical_responses", good_row(5, response_0="answer B5")),
    ("unsafe_safer_response", good_row(6, safer_response_id=0, better_response_id=MISSING)),
    ("missing_label", good_row(7, better_response_id=None, safer_response_id=None)),
    ("wrong_type", "a row that is a string"),
    ("empty_prompt", good_row(9, prompt=[{"role": "user", "content": ""}])),
    ("malformed_transcript", good_row(10, prompt=[])),
    ("overlong", good_row(11, response_1=LONG)),
    (None, good_row(12)),
]


def write_bad_file(tmp_path, kind: str):
    """Write the bad file of ``kind``; return its path and the expected {location: reason}."""
    if kind == "jsonl":
        path = write_jsonl(tmp_path / "bad.jsonl", [row for _, row in JSONL_ROWS])
        return path, {f"{path}:{i + 1}": reason for i, (reason, _) in enumerate(JSONL_ROWS)}
    if kind == "csv":
        path = tmp_path / "bad.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(cells for _, cells in CSV_ROWS)
        return path, {f"{path}:{i + 2}": reason for i, (reason, _) in enumerate(CSV_ROWS)}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([row for _, row in JSON_ROWS]))
    return path, {f"{path}:#{i}": reason for i, (reason, _) in enumerate(JSON_ROWS)}


@pytest.fixture(scope="module")
def tokenizer():
    from saferlhf.models.loading import load_tokenizer

    return load_tokenizer("tiny-llama")


@pytest.mark.parametrize("kind", ["jsonl", "csv", "json"])
def test_every_reason_is_reported_at_its_file_and_line(tmp_path, tokenizer, kind):
    path, expected = write_bad_file(tmp_path, kind)
    kept, report = validate_records(load_records(DataSource(path=str(path))), tokenizer, MAX_LENGTH, policy="drop")
    found = {source: reason for source, reason, _ in report.issues}
    assert found == {location: reason for location, reason in expected.items() if reason}
    assert len(report.issues) == len(found)  # exactly one issue per bad row
    assert [r.source for r in kept] == [location for location, reason in expected.items() if reason is None]
    wanted = {reason for reason in expected.values() if reason}
    assert {reason for reason, count in report.counts.items() if count} == wanted
    assert report.total == len(expected) and report.dropped == len(found)


def test_policy_error_names_file_line_reason_and_counts(tmp_path):
    path, _ = write_bad_file(tmp_path, "jsonl")
    with pytest.raises(DataValidationError) as raised:
        validate_records(load_records(DataSource(path=str(path))), policy="error")
    message = str(raised.value)
    assert f"{path}:2: missing_field: response_1" in message
    assert f"{path}:3: wrong_type: response_0 is a int" in message
    assert "missing_field=1" in message and "unsafe_safer_response=1" in message
    assert "10 of 13 rows failed" in message and "more issues" in message  # overlong not checked: no tokenizer


def test_policy_error_passes_clean_data():
    records = [PreferenceRecord("q", "a", "b", better_response_id=1, source="mem:1")]
    kept, report = validate_records(records, policy="error")
    assert kept == records and report.issues == []


def test_policy_keep_keeps_usable_rows_with_issues_only(tmp_path, tokenizer):
    path, expected = write_bad_file(tmp_path, "jsonl")
    kept, report = validate_records(load_records(DataSource(path=str(path))), tokenizer, MAX_LENGTH, policy="keep")
    wanted = [location for location, reason in expected.items() if reason is None or reason not in UNUSABLE]
    assert [r.source for r in kept] == wanted
    assert {expected[r.source] for r in kept} == {None, "empty_response", "identical_responses",
                                                  "unsafe_safer_response", "empty_prompt", "overlong"}
    assert report.kept == len(wanted) and sum(report.counts.values()) == len(report.issues) == 11


def test_need_selects_the_label_and_the_safety_fault_check():
    only_safer = PreferenceRecord("q", "a", "b", safer_response_id=0, source="s:1")
    only_better = PreferenceRecord("q", "a", "b", better_response_id=0, source="s:2")
    fault = PreferenceRecord("q", "a", "b", better_response_id=1, safer_response_id=1,
                             is_response_0_safe=True, is_response_1_safe=False, source="s:3")
    _, helpfulness = validate_records([only_safer, only_better, fault], need="helpfulness")
    assert [(s, r) for s, r, _ in helpfulness.issues] == [("s:1", "missing_label")]
    _, harmlessness = validate_records([only_safer, only_better, fault], need="harmlessness")
    assert [(s, r) for s, r, _ in harmlessness.issues] == [("s:2", "missing_label"), ("s:3", "unsafe_safer_response")]
    _, anything = validate_records([only_safer, only_better], need="any")
    assert anything.issues == []


def test_safety_fault_needs_both_labels():
    # safer response unsafe and the other unsafe too: consistent, not the fault
    both_unsafe = PreferenceRecord("q", "a", "b", safer_response_id=0, is_response_0_safe=False, is_response_1_safe=False)
    unknown = PreferenceRecord("q", "a", "b", safer_response_id=0, is_response_0_safe=False)
    assert check_record(both_unsafe) == [] and check_record(unknown) == []


def test_severity_and_harm_category_types():
    record = PreferenceRecord("q", "a", "b", better_response_id=0, response_0_severity_level=4,
                              response_1_harm_category={"Violence": "yes"})
    assert [reason for reason, _ in check_record(record)] == ["wrong_type", "wrong_type"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="policy 'skip'"):
        validate_records([], policy="skip")
    with pytest.raises(ValueError, match="need 'safety'"):
        validate_records([], need="safety")
    with pytest.raises(ValueError, match="max_length is required"):
        validate_records([], tokenizer=object())


def test_report_summary_to_dict_and_merge(tmp_path):
    path, _ = write_bad_file(tmp_path, "jsonl")
    _, report = validate_records(load_records(DataSource(path=str(path))), policy="drop")
    text = report.summary(examples=2)
    assert text.splitlines()[0] == ("data validation (policy=drop, need=any): 13 rows checked, 3 kept, "
                                    "10 dropped, 10 rows with issues")
    assert "  missing_field" in text and "overlong" not in text  # only the reasons that occurred
    assert f"    {path}:2: missing_field" in text and f"{path}:4:" not in text  # 2 examples
    data = report.to_dict()
    assert set(data["counts"]) == set(REASONS) and data["dropped"] == 10 and len(data["issues"]) == 10
    json.dumps(data)  # serialisable for metrics.json
    merged = report.merge(ValidationReport(total=5, kept=5))
    assert (merged.total, merged.kept, merged.counts["missing_field"]) == (18, 8, 1)


def test_duplicate_rows_are_reported_and_the_policy_decides():
    rows = [PreferenceRecord("q", "a", "b", better_response_id=1, source="f.jsonl:1"),
            PreferenceRecord("q", "a", "b", better_response_id=0, source="f.jsonl:2"),  # other label: not a repeat
            PreferenceRecord("q", "a", "b", better_response_id=1, source="f.jsonl:3", extra={"id": "x"})]
    kept, report = validate_records(rows, policy="drop")
    assert [r.source for r in kept] == ["f.jsonl:1", "f.jsonl:2"]
    assert report.counts["duplicate_row"] == 1
    assert report.issues == [("f.jsonl:3", "duplicate_row", "repeats f.jsonl:1")]
    kept, report = validate_records(rows, policy="keep")
    assert len(kept) == 3 and report.counts["duplicate_row"] == 1
    with pytest.raises(DataValidationError, match="f.jsonl:3: duplicate_row: repeats f.jsonl:1"):
        validate_records(rows, policy="error")
