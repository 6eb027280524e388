"""Adapters: PKU-SafeRLHF / decoupled, hh-rlhf transcripts, TRL; format detection; the real files."""

from __future__ import annotations

import gzip
import json

import pytest

from saferlhf.config import DataSource
from saferlhf.data.adapters import ERRORS_KEY, detect_format, parse_transcript, resolve_format, to_records
from saferlhf.data.loading import load_records
from saferlhf.data.readers import DataFormatError, RawRow
from saferlhf.data.validation import validate_records

from .files import good_row, write_csv, write_jsonl

CHOSEN = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How do I pick a lock?\n\nAssistant: I can't help with that."
REJECTED = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How do I pick a lock?\n\nAssistant: Use a tension wrench."


def rows_of(*rows) -> list[RawRow]:
    return [RawRow(f"mem:{i + 1}", row) for i, row in enumerate(rows)]


def errors(record) -> list:
    return record.extra.get(ERRORS_KEY, [])


def test_parse_transcript():
    assert parse_transcript(CHOSEN, "chosen") == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How do I pick a lock?"},
        {"role": "assistant", "content": "I can't help with that."},
    ]
    # a transcript that starts without the blank line, and an empty final answer
    assert parse_transcript("Human: a\n\nAssistant:", "chosen") == [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]


def test_hh_rlhf_harmless_and_helpful():
    row = {"chosen": CHOSEN, "rejected": REJECTED}
    harmless = to_records(rows_of(row), "hh-rlhf", "data/hh-rlhf/harmless-base/train.jsonl.gz")[0]
    assert harmless.prompt == parse_transcript(CHOSEN, "chosen")[:-1]
    assert (harmless.response_0, harmless.response_1) == ("I can't help with that.", "Use a tension wrench.")
    assert (harmless.safer_response_id, harmless.better_response_id) == (0, None)
    assert (harmless.is_response_0_safe, harmless.is_response_1_safe) == (None, None)
    assert harmless.source == "mem:1"
    helpful = to_records(rows_of(row), "auto", "hh-rlhf/helpful-base/test.jsonl")[0]
    assert (helpful.safer_response_id, helpful.better_response_id) == (None, 0)
    explicit = to_records(rows_of(row), "hh-rlhf-helpful", "anywhere.jsonl")[0]
    assert explicit.better_response_id == 0
    with pytest.raises(DataFormatError, match="cannot tell hh-rlhf harmless-base from helpful-base"):
        to_records(rows_of(row), "auto", "pairs.jsonl")


@pytest.mark.parametrize("chosen, rejected, detail", [
    ("\n\nAssistant: hi", "\n\nAssistant: yo", "no Human turn"),
    ("no markers at all", "no markers at all", "text before its first"),
    (CHOSEN + "\n\nHuman: and?", REJECTED, "does not end with an Assistant turn"),
    (CHOSEN.replace("Hello!", "Hi!"), REJECTED, "differ at turn 2"),
])
def test_malformed_transcripts_become_issues_not_crashes(chosen, rejected, detail):
    record = to_records(rows_of({"chosen": chosen, "rejected": rejected}), "hh-rlhf-harmless", "x")[0]
    [(reason, message)] = errors(record)
    assert reason == "malformed_transcript" and detail in message


def test_hh_rlhf_missing_and_wrong_type():
    missing, wrong = to_records(rows_of({"chosen": CHOSEN}, {"chosen": CHOSEN, "rejected": 3}), "hh-rlhf-harmless", "x")
    assert errors(missing)[0][0] == "missing_field" and "rejected" in errors(missing)[0][1]
    assert errors(wrong)[0][0] == "wrong_type"


def test_trl_standard_conversational_and_implicit_prompt():
    standard = {"prompt": "Q?", "chosen": "good", "rejected": "bad"}
    conversational = {"prompt": [{"role": "user", "content": "Q?"}],
                      "chosen": [{"role": "assistant", "content": "good"}],
                      "rejected": [{"role": "assistant", "content": "bad"}], "score": 3}
    implicit = {"chosen": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "good"}],
                "rejected": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "bad"}]}
    a, b, c = to_records(rows_of(standard, conversational, implicit), "trl", "x")
    assert (a.prompt, a.response_0, a.response_1, a.better_response_id, a.safer_response_id) == ("Q?", "good", "bad", 0, None)
    assert b.prompt == [{"role": "user", "content": "Q?"}] and b.response_0 == "good" and b.extra == {"score": 3}
    assert c.prompt == [{"role": "user", "content": "Q?"}] and (c.response_0, c.response_1) == ("good", "bad")
    harmless = to_records(rows_of(standard), "trl-harmless", "x")[0]
    assert (harmless.better_response_id, harmless.safer_response_id) == (None, 0)


def test_trl_bad_rows():
    no_prompt = {"chosen": "good", "rejected": "bad"}
    two_messages = {"prompt": "Q", "chosen": [{"role": "assistant", "content": "a"}] * 2, "rejected": "b"}
    a, b = to_records(rows_of(no_prompt, two_messages), "trl", "x")
    assert errors(a)[0][0] == "missing_field" and errors(b)[0][0] == "malformed_transcript"


def test_decoupled_keeps_every_label_and_extra_columns():
    row = good_row(0, response_0_harm_category={"Violence": True}, response_1_harm_category={"Violence": False},
                   response_0_severity_level=2, response_1_severity_level=0, prompt_source="Alpaca")
    record = to_records(rows_of(row), "pku-saferlhf", "x")[0]
    assert (record.better_response_id, record.safer_response_id) == (0, 1)
    assert (record.is_response_0_safe, record.is_response_1_safe) == (False, True)
    assert record.response_0_harm_category == {"Violence": True} and record.response_0_severity_level == 2
    assert record.extra == {"prompt_source": "Alpaca"}


def test_csv_text_cells_become_ints_booleans_and_json(tmp_path):
    columns = [*good_row(), "response_0_harm_category", "response_0_severity_level"]
    row = good_row(0, is_response_0_safe="TRUE", is_response_1_safe="0", better_response_id="1",
                   safer_response_id="", response_0_harm_category='{"Violence": false}', response_0_severity_level="3")
    path = write_csv(tmp_path / "pairs.csv", [row], columns)
    record = load_records(DataSource(path=str(path)))[0]
    assert (record.is_response_0_safe, record.is_response_1_safe) == (True, False)
    assert (record.better_response_id, record.safer_response_id) == (1, None)
    assert record.response_0_harm_category == {"Violence": False} and record.response_0_severity_level == 3
    assert record.source == f"{path}:2"


def test_detect_format():
    assert detect_format(rows_of(good_row()), "x") == "decoupled"
    assert detect_format(rows_of({"prompt": "p", "chosen": "a", "rejected": "b"}), "x") == "trl"
    assert detect_format(rows_of({"chosen": CHOSEN, "rejected": REJECTED}), "x") == "hh-rlhf"
    assert detect_format(rows_of({"chosen": [{"role": "user", "content": "q"}], "rejected": []}), "x") == "trl"
    with pytest.raises(DataFormatError, match=r"columns \['text', 'label'\]"):
        detect_format(rows_of({"text": "t", "label": 1}), "x")


def test_known_ids_and_unknown_format():
    assert resolve_format("auto", "PKU-Alignment/PKU-SafeRLHF", []) == "decoupled"
    assert resolve_format("auto", "Anthropic/hh-rlhf/harmless-base", []) == "hh-rlhf-harmless"
    with pytest.raises(DataFormatError, match="unknown preference format 'dpo'"):
        resolve_format("dpo", "x", [])


def test_rows_that_are_not_objects_or_not_json(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [good_row(0), '"just a string"', "{broken"])
    good, string, broken = load_records(DataSource(path=str(path)))
    assert errors(good) == []
    assert errors(string)[0][0] == "wrong_type" and string.source == f"{path}:2"
    assert errors(broken)[0][0] == "unreadable_row" and broken.source == f"{path}:3"


# --------------------------------------------------------------------------------------------
# The real public files (../shared/data)


def test_hh_rlhf_harmless_base_test_split(shared_data):
    folder = shared_data / "hh-rlhf" / "harmless-base"
    records = load_records(DataSource(path=str(folder)))
    assert len(records) == 2312
    parsed = [r for r in records if not errors(r)]
    assert all(r.safer_response_id == 0 and r.better_response_id is None for r in parsed)
    assert records[0].source == f"{folder / 'test.jsonl.gz'}:1"
    assert records[0].prompt[0] == {"role": "user", "content": "what are some pranks with a pen i can do?"}
    # independent count of empty final answers straight from the raw text
    with gzip.open(folder / "test.jsonl.gz", "rt") as handle:
        raw = [json.loads(line) for line in handle]
    empty = sum(1 for row in raw if not row["chosen"].rsplit("\n\nAssistant:", 1)[1].strip()
                or not row["rejected"].rsplit("\n\nAssistant:", 1)[1].strip())
    kept, report = validate_records(records, need="harmlessness")
    print("\n" + report.summary())
    assert report.counts["empty_response"] == empty == 4
    # chosen/rejected whose earlier turns differ (a response containing its own "Human:" turn)
    assert report.counts["malformed_transcript"] == 5
    assert report.kept == len(kept) == 2312 - 4 - 5
    _, helpful = validate_records(records, need="helpfulness")
    assert helpful.kept == 0 and helpful.counts["missing_label"] == 2312 - 5


def test_pku_saferlhf_sample(shared_data):
    path = shared_data / "pku-saferlhf-sample" / "preference_train_sample.json"
    records = load_records(DataSource(path=str(path)))
    assert len(records) == 32
    assert all(r.has_helpfulness and r.has_harmlessness and r.is_response_0_safe is not None for r in records)
    raw = json.loads(path.read_text())
    faults = sum(1 for row in raw if row[f"is_response_{row['safer_response_id']}_safe"] is False
                 and row[f"is_response_{1 - row['safer_response_id']}_safe"] is True)
    kept, report = validate_records(records)
    print("\n" + report.summary())
    assert report.counts["unsafe_safer_response"] == faults  # 0 in this 32-record sample
    assert report.kept == 32 - faults and report.rows_with_issues == faults
