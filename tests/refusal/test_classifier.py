"""Learned refusal classifier on tiny-bert: encoding, a few training steps, save/load round trip."""

import json
from pathlib import Path

import pytest
import torch

from saferlhf.config import ConfigError, load_config
from saferlhf.refusal.classifier import RefusalClassifier, class_names, fold_probabilities
from saferlhf.refusal.classifier_stage import RefusalClassifierConfig, run
from saferlhf.refusal.patterns import LABELS
from saferlhf.runio import read_log

REPO = Path(__file__).resolve().parents[2]


def test_truncation_keeps_the_start_of_the_response():
    classifier = RefusalClassifier.from_backbone("tiny-bert", max_length=24)
    response = "I cannot help with that. " + "filler " * 200
    ids = classifier.encode("How do I pick a lock on my own front door?", response)["input_ids"]
    assert len(ids) == 24
    text = classifier.tokenizer.decode(ids)
    assert "i cannot help with that" in text and "how do i" in text


def test_fold_probabilities():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert fold_probabilities(probs, class_names(True)).tolist() == [[pytest.approx(0.1), pytest.approx(0.6),
                                                                       pytest.approx(0.3)]]
    assert fold_probabilities(probs[:, :3], class_names(False)).shape == (1, 3)


def test_train_few_steps_and_round_trip(tmp_path, mini_chatgpt, mini_xstest):
    config = load_config(RefusalClassifierConfig, overrides=[
        "model.name_or_path=tiny-bert", f"train_files=[{mini_chatgpt}]", f"xstest_dir={mini_xstest}",
        f"output_dir={tmp_path / 'run'}", "max_length=48", "response_tokens=24", "train.max_steps=3", "train.batch_size=4",
        "train.logging_steps=1", "train.learning_rate=1e-3", "validation_fraction=0.25",
    ])
    metrics = run(config)
    out = tmp_path / "run"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("xstest_binary_agreement", "xstest_3way_agreement", "rule_xstest_binary_agreement",
                "string_match_xstest_binary_agreement", "gpt4_xstest_3way_agreement", "validation_binary_agreement"):
        assert 0.0 <= saved[key] <= 1.0, key
    assert saved["train_steps"] == 3 and saved["xstest_rows"] == 10
    assert any("loss" in line for line in read_log(out / "log.jsonl"))
    confusion = json.loads((out / "confusion.json").read_text())
    assert set(confusion["xstest"]) == {"rule", "classifier", "string_match", "gpt4"}
    assert confusion["all_data_refusal_kind_rule"]["technical"]["technical"] >= 1
    assert len((out / "xstest_predictions.jsonl").read_text().splitlines()) == 10
    assert not (out / "checkpoints").exists()
    assert "# Refusal classifier" in (out / "README.md").read_text() and saved["model_card"] == str(out / "README.md")

    loaded = RefusalClassifier.from_pretrained(out)
    assert loaded.classes == class_names(True) and loaded.max_length == 48
    prompts = ["How do I kill a Python process?", "How do I kill my neighbour?", None]
    responses = ["Use kill PID.", "I'm sorry, I can't help with that.", "I don't have access to the internet."]
    again = RefusalClassifier.from_pretrained(out)
    assert loaded.predict(prompts, responses) == again.predict(prompts, responses, batch_size=1)
    assert torch.allclose(loaded.predict_proba(prompts, responses), again.predict_proba(prompts, responses, batch_size=2),
                          atol=1e-5)
    proba = loaded.predict_proba(prompts, responses)
    assert proba.shape == (3, len(LABELS)) and torch.allclose(proba.sum(-1), torch.ones(3), atol=1e-5)
    assert all(label in LABELS for label in loaded.predict(prompts, responses))


def test_round_trip_identical_to_trained_model(tmp_path):
    classifier = RefusalClassifier.from_backbone("tiny-bert", technical_class=False, max_length=32)
    torch.manual_seed(0)
    with torch.no_grad():
        classifier.model.classifier.weight.normal_(0, 1.0)  # a non-trivial head
    classifier.save_pretrained(tmp_path / "clf")
    loaded = RefusalClassifier.from_pretrained(tmp_path / "clf")
    responses = ["Sure, here is how.", "I cannot do that.", "As an AI I have no opinions, but here are views."]
    assert torch.allclose(classifier.predict_proba(None, responses), loaded.predict_proba(None, responses), atol=1e-6)
    assert loaded.classes == LABELS


def test_config_file_and_validation():
    config = load_config(RefusalClassifierConfig, REPO / "configs" / "refusal-classifier.yaml")
    assert config.model.name_or_path == "minilm-l6" and config.train_files
    with pytest.raises(ConfigError, match="validation_fraction"):
        load_config(RefusalClassifierConfig, overrides=["validation_fraction=0"])
    with pytest.raises(ConfigError, match="technical_class"):
        load_config(RefusalClassifierConfig, overrides=["tone_map={complied: compliance, rejected: full_refusal}"])
    with pytest.raises(ConfigError, match="unknown config key 'max_lenght'"):
        load_config(RefusalClassifierConfig, overrides=["max_lenght=3"])
    with pytest.raises(FileNotFoundError):
        RefusalClassifier.from_pretrained(REPO / "configs")


def test_prompt_only_classifier_ignores_the_response(tmp_path):
    classifier = RefusalClassifier.from_backbone("tiny-bert", max_length=32, prompt_only=True)
    assert classifier.encode("How do I bake bread?", "I can't.") == classifier.encode("How do I bake bread?", "Sure!")
    classifier.save_pretrained(tmp_path / "prompt")
    loaded = RefusalClassifier.from_pretrained(tmp_path / "prompt")
    assert loaded.prompt_only
    prompts = ["How do I bake bread?", "How do I build a bomb?"]
    assert torch.allclose(loaded.predict_proba(prompts, None), classifier.predict_proba(prompts, ["x", "y"]), atol=1e-6)
    with pytest.raises(ValueError, match="responses are required"):
        RefusalClassifier.from_backbone("tiny-bert", max_length=32).predict(prompts, None)


def test_response_only_classifier_ignores_the_prompt(tmp_path):
    classifier = RefusalClassifier.from_backbone("tiny-bert", max_length=40, response_tokens=20, use_prompt=False)
    long_answer = "I cannot help with that request because it is harmful. " * 10
    encoded = classifier.encode("How do I build a bomb?", long_answer)
    assert encoded == classifier.encode("How do I bake bread?", long_answer) == classifier.encode(None, long_answer)
    assert len(encoded["input_ids"]) == 22  # [CLS] + the first 20 response tokens + [SEP]
    classifier.save_pretrained(tmp_path / "response")
    assert not RefusalClassifier.from_pretrained(tmp_path / "response").use_prompt
