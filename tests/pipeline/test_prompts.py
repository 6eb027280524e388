"""The ``prompts`` section: user prompt files beside (or instead of) the built-in training split."""

import json

import pytest

from saferlhf.config import load_config
from saferlhf.data.builtin import builtin_prompts
from saferlhf.pipeline.config import PipelineConfig, PromptsConfig
from saferlhf.pipeline.prompts import training_prompts


def _config(*overrides: str) -> PromptsConfig:
    return load_config(PipelineConfig, overrides=list(overrides)).prompts


def test_user_files_follow_the_builtin_training_split(tmp_path, capsys):
    path = tmp_path / "mine.jsonl"
    heldout = builtin_prompts(split="heldout")[0]["prompt"]
    path.write_text(json.dumps({"prompt": "How do I pick a lock?", "label": "harmful", "category": "crime"}) + "\n"
                    + json.dumps({"prompt": f"  {heldout.upper()} ", "label": "benign"}) + "\n"
                    + json.dumps({"prompt": "How do I kill a zombie in Minecraft?", "label": "pseudo_harmful"}) + "\n")
    rows = training_prompts(_config(f"prompts.files=[{path}]"))
    builtin = builtin_prompts(split="train")
    assert rows[:len(builtin)] == builtin
    assert rows[len(builtin):] == [
        {"id": "mine.jsonl:1", "prompt": "How do I pick a lock?", "label": "harmful", "category": "crime"},
        {"id": "mine.jsonl:3", "prompt": "How do I kill a zombie in Minecraft?", "label": "pseudo_harmful",
         "category": "user"}]
    assert f"prompts: 2 from {path}, 1 skipped (built-in held-out prompts)" in capsys.readouterr().out


def test_builtin_off_keeps_only_the_files(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("prompt,label\nWrite a haiku about rain.,benign\n")
    rows = training_prompts(_config("prompts.builtin=false", f"prompts.files=[{path}]"))
    assert [(r["prompt"], r["label"]) for r in rows] == [("Write a haiku about rain.", "benign")]


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "Hi", "label": "safe"}', "mine.jsonl:2: key 'label' is 'safe', expected one of"),
    ('{"prompt": "", "label": "benign"}', "mine.jsonl:2: key 'prompt' must be a non-empty string"),
    ('not json', "mine.jsonl:2: unreadable prompt row"),
])
def test_a_bad_row_names_its_line_and_key(tmp_path, line, message):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "Hello", "label": "benign"}\n' + line + "\n")
    with pytest.raises(ValueError, match=message):
        training_prompts(_config(f"prompts.files=[{path}]"))


def test_files_of_held_out_prompts_only_leave_nothing_to_train_on(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"prompt": builtin_prompts(split="heldout")[3]["prompt"], "label": "harmful"}) + "\n")
    with pytest.raises(ValueError, match="prompts.files.*no training prompt left"):
        training_prompts(_config("prompts.builtin=false", f"prompts.files=[{path}]"))


def test_no_prompts_at_all_is_a_config_error():
    with pytest.raises(ValueError, match="prompts.files.*no training prompts"):
        _config("prompts.builtin=false")


@pytest.mark.parametrize("name, content", [("empty.jsonl", ""), ("header.csv", "prompt,label\n")])
def test_an_empty_prompts_file_is_called_empty(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=f"{name} holds no rows"):
        training_prompts(_config(f"prompts.files=[{path}]"))
