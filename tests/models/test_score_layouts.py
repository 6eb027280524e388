"""Score-model folder layouts: the standard HF folder written here, the legacy layout, TRL, OpenRLHF and
PKU Beaver folders written by the tests themselves from a tiny Llama, each checked against scores computed
by hand from the backbone's hidden state at the last real token."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from saferlhf.data.templates import encode
from saferlhf.models import builtin
from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel

PROMPTS = ["How do I pick a lock?", "Hi", "Write a haiku about autumn leaves."]
ANSWERS = ["I can't help with that.", "Hello! How can I help you today?", "Leaves fall, red and gold."]


def batch(tokenizer):
    """Right-padded (B, L) ids and mask of the test pairs, padded with the tokenizer's pad token."""
    rows = [encode(tokenizer, p, a, 128).input_ids for p, a in zip(PROMPTS, ANSWERS)]
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)], attention_mask[i, :len(row)] = torch.tensor(row), 1
    return input_ids, attention_mask


def scores(model, tokenizer):
    with torch.no_grad():
        return model(*batch(tokenizer)).end_scores


def by_hand(backbone, weight, bias, tokenizer):
    """w · h_last (+ b) with h_last the hidden state at each row's last attended token."""
    input_ids, attention_mask = batch(tokenizer)
    with torch.no_grad():
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
    last = attention_mask.sum(1) - 1  # right padding
    end_hidden = hidden[torch.arange(len(last)), last]  # (B, H)
    return end_hidden @ weight.squeeze(0) + (bias if bias is not None else 0.0)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(builtin.resolve("tiny-llama"))
    return config, AutoModel.from_pretrained(builtin.resolve("tiny-llama")).eval(), load_tokenizer("tiny-llama")


def test_round_trip_through_auto_model_for_sequence_classification(tmp_path):
    model = ScoreModel.from_backbone("tiny-llama", kind="cost").eval()
    model.score_config.score_mean, model.score_config.score_std = 0.25, 2.0
    assert model.save_pretrained(tmp_path, load_tokenizer("tiny-llama")) == "hf-sequence-classification"
    assert not (tmp_path / "score_config.json").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    assert config["saferlhf"]["kind"] == "cost" and config["saferlhf"]["score_std"] == 2.0
    assert "cost > 0 means unsafe" in config["saferlhf"]["cost_sign"]

    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert hf_tokenizer.pad_token_id != hf_tokenizer.eos_token_id  # else HF reads the score one token early
    hf_model = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        hf_scores = hf_model(*batch(hf_tokenizer)).logits.squeeze(-1)
    ours = scores(model, load_tokenizer("tiny-llama"))
    assert torch.allclose(hf_scores, ours, atol=1e-5)
    assert ours.std() > 0  # the pairs score differently: the comparison can fail

    loaded = ScoreModel.from_pretrained(tmp_path)
    assert loaded.score_config.kind == "cost" and loaded.score_config.score_mean == 0.25
    from saferlhf.policy.scorers import same_tokenizer

    assert same_tokenizer(load_tokenizer("tiny-llama"), load_tokenizer(str(tmp_path)))  # rollouts still scored as is
    assert torch.allclose(scores(loaded, hf_tokenizer), ours, atol=1e-5)


def test_old_layout_still_reads(tmp_path):
    for name, bias in (("tiny-llama", True), ("tiny-bert", None)):  # a biased decoder head; a mean-pooled encoder
        model = ScoreModel.from_backbone(name, kind="reward", head_bias=bias).eval()
        tokenizer = load_tokenizer(name)
        assert model.save_pretrained(tmp_path / name, tokenizer) == "saferlhf-legacy"
        assert (tmp_path / name / "score_config.json").exists()
        loaded = ScoreModel.from_pretrained(tmp_path / name)
        assert loaded.score_config.layout == "saferlhf-legacy"
        assert torch.equal(scores(model, tokenizer), scores(loaded, tokenizer))


def test_trl_sequence_classification_folder(tmp_path, tiny):
    config, _, tokenizer = tiny
    config = AutoConfig.from_pretrained(builtin.resolve("tiny-llama"), num_labels=1, pad_token_id=0)
    torch.manual_seed(1)
    trl = AutoModelForSequenceClassification.from_config(config).eval()
    trl.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = ScoreModel.from_pretrained(tmp_path, kind="reward")
    assert loaded.score_config.layout == "hf-sequence-classification"
    expected = by_hand(trl.model, trl.score.weight, None, tokenizer)
    assert torch.allclose(scores(loaded, tokenizer), expected, atol=1e-5)


def _write_custom(folder, backbone, head: dict, config_extra: dict, tokenizer, as_pickle=False):
    """A folder the way OpenRLHF / safe-rlhf save theirs: ``model.*`` backbone weights + a named head."""
    folder.mkdir(parents=True)
    state = {f"model.{k}": v.clone().contiguous() for k, v in backbone.state_dict().items()}
    state.update({k: v.clone().contiguous() for k, v in head.items()})
    if as_pickle:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"))
    config = backbone.config.to_dict()
    config.update(config_extra)
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)


def test_openrlhf_reward_model(tmp_path, tiny):
    _, backbone, tokenizer = tiny
    weight = torch.randn(1, backbone.config.hidden_size, generator=torch.Generator().manual_seed(2))
    _write_custom(tmp_path / "orm", backbone, {"value_head.weight": weight},
                  {"architectures": ["LlamaModel"], "normalize_reward": True, "mean": 0.5, "std": 3.0}, tokenizer)
    loaded = ScoreModel.from_pretrained(tmp_path / "orm")
    assert loaded.score_config.layout == "openrlhf"
    assert (loaded.score_config.score_mean, loaded.score_config.score_std) == (0.5, 3.0)
    assert torch.allclose(scores(loaded, tokenizer), by_hand(backbone, weight, None, tokenizer), atol=1e-5)


@pytest.mark.parametrize("as_pickle", [False, True])
def test_beaver_llama_for_score(tmp_path, tiny, as_pickle):
    _, backbone, tokenizer = tiny
    generator = torch.Generator().manual_seed(3)
    weight, bias = torch.randn(1, backbone.config.hidden_size, generator=generator), torch.tensor([0.7])
    _write_custom(tmp_path / "beaver", backbone, {"score_head.weight": weight, "score_head.bias": bias,
                                                  "normalizer.mean": torch.zeros(1)},
                  {"architectures": ["LlamaForScore"], "score_dim": 1, "score_type": "cost", "bias": True,
                   "do_normalize": False, "mean": [0.1], "var": [4.0]}, tokenizer, as_pickle)
    loaded = ScoreModel.from_pretrained(tmp_path / "beaver")
    assert loaded.score_config.layout == "beaver" and loaded.score_config.kind == "cost"
    assert loaded.score_config.score_std == pytest.approx(2.0)
    assert torch.allclose(scores(loaded, tokenizer), by_hand(backbone, weight, bias, tokenizer), atol=1e-5)


def test_hub_id_resolves_through_huggingface_hub(tmp_path, tiny, monkeypatch):
    _, backbone, tokenizer = tiny
    weight = torch.randn(1, backbone.config.hidden_size, generator=torch.Generator().manual_seed(4))
    _write_custom(tmp_path / "beaver", backbone, {"score_head.weight": weight},
                  {"architectures": ["LlamaForScore"], "score_dim": 1, "score_type": "cost"}, tokenizer)
    asked = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        asked.append(repo_id)
        return str(tmp_path / "beaver")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = ScoreModel.from_pretrained("PKU-Alignment/beaver-7b-v1.0-cost")
    assert asked == ["PKU-Alignment/beaver-7b-v1.0-cost"] and loaded.score_config.kind == "cost"
    assert torch.allclose(scores(loaded, tokenizer), by_hand(backbone, weight, None, tokenizer), atol=1e-5)


def test_folders_that_are_not_score_models_are_refused(tmp_path, tiny):
    config, _, tokenizer = tiny
    two = AutoModelForSequenceClassification.from_config(
        AutoConfig.from_pretrained(builtin.resolve("tiny-llama"), num_labels=2))
    two.save_pretrained(tmp_path / "two")
    with pytest.raises(ValueError, match="2 labels"):
        ScoreModel.from_pretrained(tmp_path / "two")
    with pytest.raises(ValueError, match="no score head"):
        ScoreModel.from_pretrained(builtin.resolve("tiny-llama"))  # a causal LM, no head
    with pytest.raises(FileNotFoundError, match="not a score model folder"):
        ScoreModel.from_pretrained(tmp_path)
