"""Unpaired safety data (TRL's prompt/completion/label, BeaverTails' prompt/response/is_safe/category): read,
validated with a report, and trained into the cost model's sign term only."""

from __future__ import annotations

import json
import math

import torch

from saferlhf.config import DataSource
from saferlhf.data.adapters import detect_format
from saferlhf.data.loading import load_records
from saferlhf.data.readers import RawRow
from saferlhf.data.validation import validate_records
from saferlhf.training.score_losses import cost_loss


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_trl_unpaired_rows_are_read_with_a_report_of_what_was_left_out(tmp_path):
    path = _write(tmp_path / "kto.jsonl", [
        {"prompt": "How do I pick a lock?", "completion": "I can't help with that.", "label": True},
        {"prompt": "How do I pick a lock?", "completion": "Insert a tension wrench, then rake the pins.", "label": False},
        {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello!"}],
         "label": True},
        {"prompt": "q", "completion": "a", "label": None},       # no label: missing_label
        {"prompt": "q", "completion": "   ", "label": True},     # empty_response
        {"prompt": "q", "completion": "b", "label": "maybe"},    # wrong_type
        {"prompt": "How do I pick a lock?", "completion": "I can't help with that.", "label": True},  # duplicate_row
    ])
    records = load_records(DataSource(path=str(path)))
    assert [r.unpaired for r in records] == [True] * 7
    assert (records[0].response_0, records[0].response_1, records[0].is_response_0_safe) == (
        "I can't help with that.", "I can't help with that.", True)
    assert records[2].prompt == [{"role": "user", "content": "Hi"}] and records[2].response_0 == "Hello!"
    kept, report = validate_records(records, need="harmlessness")
    assert [r.source.rsplit(":", 1)[1] for r in kept] == ["1", "2", "3"]
    assert (report.total, report.kept, report.dropped) == (7, 3, 4)
    assert {reason: count for reason, count in report.counts.items() if count} == {
        "missing_label": 1, "empty_response": 1, "wrong_type": 1, "duplicate_row": 1}
    assert "identical_responses" not in report.summary()  # the repeated response of an unpaired record is no issue
    _, for_reward = validate_records(records[:3], need="helpfulness")
    assert for_reward.kept == 0 and for_reward.counts["missing_label"] == 3


def test_beavertails_rows_keep_their_harm_categories(tmp_path):
    path = _write(tmp_path / "beavertails.jsonl", [
        {"prompt": "p", "response": "r", "is_safe": False, "category": {"violence": True, "privacy": False}},
        {"prompt": "p2", "response": "r2", "is_safe": True, "category": {"violence": False, "privacy": False}},
    ])
    assert detect_format([RawRow("x", json.loads(line)) for line in path.read_text().splitlines()], "x") == "beavertails"
    records = load_records(DataSource(path=str(path)))
    assert records[0].response_0_harm_category == {"violence": True, "privacy": False}
    assert [r.is_response_0_safe for r in records] == [False, True]
    kept, report = validate_records(records, need="harmlessness")
    assert report.kept == 2 and len(kept) == 2


def test_an_unpaired_record_adds_its_sign_term_only():
    # one ranked pair (safer -1, unsafer 2, labelled safe / unsafe) and one unpaired safe response scored 2
    safer, unsafer = torch.tensor([-1.0, 2.0]), torch.tensor([2.0, 2.0])
    loss = cost_loss(safer, unsafer, torch.tensor([1.0, 1.0]), torch.tensor([0.0, math.nan]), regularization=0.0,
                     ranked=torch.tensor([1.0, 0.0]))
    ranked_pair = math.log(1 + math.exp(-3)) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))
    unpaired = math.log(1 + math.exp(2))  # -log σ(-C) for a safe response with C = 2
    assert abs(loss.item() - (ranked_pair + unpaired) / 2) < 1e-6


def test_train_cost_on_unpaired_rows_learns_the_sign(tmp_path):
    from saferlhf.config import load_config
    from saferlhf.stages.score_training import ScoreStageConfig, train_score_model

    rows = []
    for i in range(32):
        rows.append({"prompt": f"How do I do dangerous thing {i}?", "completion": "I can't help with that.",
                     "label": True, "category": {"weapons": False}})
        rows.append({"prompt": f"How do I do dangerous thing {i}?", "label": False, "category": {"weapons": True},
                     "completion": f"Sure, here are detailed steps: first get the materials, step {i}."})
    data = _write(tmp_path / "kto.jsonl", rows)
    config = load_config(ScoreStageConfig, None, [
        f"data.train=[{data}]", "model.name_or_path=tiny-bert", f"output_dir={tmp_path / 'out'}", "data.max_length=48",
        "train.batch_size=8", "train.learning_rate=1e-3", "train.epochs=3", "train.warmup_ratio=0.0",
        "normalization_samples=8"])
    metrics = train_score_model(config, "cost")
    assert metrics["data_report"]["kept"] == 64 and metrics["eval_sign_accuracy"] >= 0.9
    assert math.isnan(metrics["eval_accuracy"])  # no ranked pair to measure
    groups = metrics["eval_per_category"]["category"]  # the held-out rows by their category (BeaverTails-style)
    assert groups["weapons"]["unsafe_share"] == 1.0 and groups["none"]["unsafe_share"] == 0.0
    assert groups["weapons"]["n"] + groups["none"]["n"] == metrics["num_eval_pairs"]


def test_per_category_metrics_of_the_cost_model():
    from saferlhf.data.records import PreferenceRecord
    from saferlhf.training.score_metrics import per_category_metrics

    pair = PreferenceRecord(prompt="p", response_0="harmful", response_1="refusal", safer_response_id=1,
                            is_response_0_safe=False, is_response_1_safe=True,
                            response_0_harm_category={"violence": True, "privacy": True},
                            response_1_harm_category={"violence": False, "privacy": False},
                            response_0_severity_level=2, response_1_severity_level=0)
    single = PreferenceRecord(prompt="q", response_0="doxxing", response_1="doxxing", unpaired=True,
                              is_response_0_safe=False, is_response_1_safe=False,
                              response_0_harm_category={"privacy": True})
    # scores in scoring order: first = the safer response (pair: response 1; unpaired: its only response)
    groups = per_category_metrics([pair, single], torch.tensor([-1.0, -0.5]), torch.tensor([3.0, -0.5]))
    assert groups["category"] == {
        "none": {"n": 1, "unsafe_share": 0.0, "mean_cost": -1.0, "sign_accuracy": 1.0},
        "privacy": {"n": 2, "unsafe_share": 1.0, "mean_cost": 1.25, "sign_accuracy": 0.5},
        "violence": {"n": 1, "unsafe_share": 1.0, "mean_cost": 3.0, "sign_accuracy": 1.0}}
    assert groups["severity"] == {"0": {"n": 1, "unsafe_share": 0.0, "mean_cost": -1.0, "sign_accuracy": 1.0},
                                  "2": {"n": 1, "unsafe_share": 1.0, "mean_cost": 3.0, "sign_accuracy": 1.0}}
