"""Model cards, the push to the Hub (mocked: no network), and the hub section's validation."""

import pytest

from saferlhf.config import ConfigError, HubConfig, load_config
from saferlhf.models.model_card import publish, render
from saferlhf.stages.sft import SFTStageConfig


def test_card_names_producer_data_metrics_and_the_cost_sign():
    card = render("cost", base_model="owner/base-model", data=["pairs.jsonl"],
                  metrics={"eval_accuracy": 0.91234, "kind": "cost", "nested": {"x": 1}, "canary": {"correct": 4}},
                  config={"train": {"learning_rate": 1e-3}})
    assert card.startswith("---\n") and "base_model: owner/base-model" in card  # Hub metadata
    assert "# Cost model" in card and "`pairs.jsonl`" in card and "| eval_accuracy | 0.9123 |" in card
    assert "nested" not in card.split("## Sign canary")[0]  # only scalars in the table
    assert "C > 0 for unsafe" in card and "learning_rate: 0.001" in card and '"correct": 4' in card
    assert "base_model:" not in render("sft", base_model="tiny-llama")  # built-in names are no Hub reference
    with pytest.raises(ValueError, match="unknown kind"):
        render("critic")


class FakeApi:
    calls: list = []

    def create_repo(self, repo_id, private=True, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, commit_message="", ignore_patterns=None):
        self.calls.append(("upload_folder", folder_path, repo_id))


def test_publish_writes_the_card_and_pushes_only_when_asked(tmp_path, monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    done = publish(tmp_path / "model", "reward", HubConfig(), metrics={"eval_accuracy": 0.5})
    assert (tmp_path / "model" / "README.md").exists() and "hub_url" not in done and FakeApi.calls == []
    done = publish(tmp_path / "model", "reward", HubConfig(push_to_hub=True, hub_model_id="me/reward"))
    assert done["hub_url"] == "https://huggingface.co/me/reward"
    assert FakeApi.calls == [("create_repo", "me/reward", True, True),
                             ("upload_folder", str(tmp_path / "model"), "me/reward")]


def test_push_to_hub_without_a_repository_id_is_a_config_error():
    with pytest.raises(ConfigError, match="hub.hub_model_id.*must be set"):
        load_config(SFTStageConfig, None, ["hub.push_to_hub=true"])
    with pytest.raises(ConfigError, match="hub.hub_model_id.*owner/name"):
        load_config(SFTStageConfig, None, ["hub.hub_model_id=just-a-name"])
