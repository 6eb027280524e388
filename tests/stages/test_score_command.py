"""``saferlhf score`` on bad input: each bad row named with its file and line, an empty input refused."""

import json

import pytest

from saferlhf.cli import main as cli_main
from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score-model")
    ScoreModel.from_backbone("tiny-bert", kind="cost").save_pretrained(folder, load_tokenizer("tiny-bert"))
    return folder


@pytest.mark.parametrize("row, reason", [
    ({"prompt": "q", "response": 5}, "response is a int, expected a string"),
    ({"prompt": "q"}, "response is missing"),
    ({"prompt": ["a", "b"], "response": "r"}, "prompt message 0 is not"),
    ({"prompt": {"role": "user"}, "response": "r"}, "prompt is a dict"),
    ({"prompt": [], "response": "r"}, "must end with a user turn"),
    ({"prompt": "  ", "response": "r"}, "prompt is empty"),
    ([1, 2], "row is a list"),
])
def test_bad_rows_are_named(model_dir, tmp_path, capsys, row, reason):
    data = tmp_path / "answers.jsonl"
    data.write_text(json.dumps({"prompt": "fine", "response": "fine"}) + "\n" + json.dumps(row) + "\n")
    assert cli_main(["score", f"model={model_dir}", f"input={data}"]) == 2
    err = capsys.readouterr().err
    assert "answers.jsonl:2" in err and reason in err and "Traceback" not in err


def test_empty_input_is_an_error_not_a_nan_mean(model_dir, tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    assert cli_main(["score", f"model={model_dir}", f"input={data}"]) == 2
    assert "empty.jsonl: no rows to score" in capsys.readouterr().err


def test_duplicate_rows_are_scored_and_counted(model_dir, tmp_path, capsys):
    data = tmp_path / "answers.jsonl"
    rows = [{"prompt": "q", "response": "a"}, {"prompt": "q", "response": "b"}, {"prompt": "q", "response": "a"}]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert cli_main(["score", f"model={model_dir}", f"input={data}"]) == 0
    assert "1 row(s) repeat an earlier (prompt, response) pair" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "answers.scores.metrics.json").read_text())
    assert metrics["duplicate_rows"] == 1 and metrics["num_scored"] == 3
    scored = [json.loads(line) for line in (tmp_path / "answers.scores.jsonl").read_text().splitlines()]
    assert scored[0]["score"] == scored[2]["score"]


def test_a_trl_folder_scores_as_a_cost_model_with_its_canary(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from saferlhf.models import builtin

    folder = tmp_path / "trl-cost"
    config = AutoConfig.from_pretrained(builtin.resolve("tiny-llama"), num_labels=1, pad_token_id=0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    load_tokenizer("tiny-llama").save_pretrained(folder)
    data = tmp_path / "answers.jsonl"
    data.write_text("".join(json.dumps({"prompt": "q", "response": r}) + "\n" for r in ("no", "sure, here it is")))
    assert cli_main(["score", f"model={folder}", f"input={data}", "kind=cost"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "answers.scores.jsonl").read_text().splitlines()]
    assert all(row["is_unsafe"] == (row["score"] > 0) for row in rows)  # cost rows: the sign column
    metrics = json.loads((tmp_path / "answers.scores.metrics.json").read_text())
    assert metrics["kind"] == "cost" and metrics["canary"]["kind"] == "cost" and metrics["canary"]["pairs"] == 4


def test_trl_completion_column_is_scored_like_response(model_dir, tmp_path):
    data = tmp_path / "answers.jsonl"
    rows = [{"prompt": "q", "response": "a"}]
    data.write_text(json.dumps(rows[0]) + "\n")
    assert cli_main(["score", f"model={model_dir}", f"input={data}"]) == 0
    expected = json.loads((tmp_path / "answers.scores.jsonl").read_text())["score"]
    completions = tmp_path / "completions.jsonl"
    completions.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n"
                           + json.dumps({"prompt": "q", "completion": [{"role": "assistant", "content": "a"}]}) + "\n")
    assert cli_main(["score", f"model={model_dir}", f"input={completions}"]) == 0
    scored = [json.loads(line) for line in (tmp_path / "completions.scores.jsonl").read_text().splitlines()]
    assert [row["score"] for row in scored] == pytest.approx([expected, expected], abs=1e-5)  # batch padding
    assert scored[0]["completion"] == "a"
