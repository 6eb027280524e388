"""Score model: end-score indexing under left and right padding, save/load round trip."""

import torch

from saferlhf.models.loading import load_tokenizer
from saferlhf.models.score_model import ScoreModel, end_index

TEXTS = ["How can I kill a Python process? Use kill.", "Hi", "A medium length sentence here."]


def test_end_index_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert end_index(right).tolist() == [2, 4, 0]
    assert end_index(left).tolist() == [4, 4, 4]


def test_end_scores_read_last_real_token():
    model = ScoreModel.from_backbone("tiny-llama", kind="reward").eval()
    tokenizer = load_tokenizer("tiny-llama", padding_side="right")
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**batch)
    lengths = batch["attention_mask"].sum(1)
    for row, length in enumerate(lengths.tolist()):
        assert output.end_scores[row] == output.token_scores[row, length - 1]


def test_left_and_right_padding_give_the_same_scores_on_a_decoder():
    model = ScoreModel.from_backbone("tiny-llama", kind="cost").eval()
    scores = {}
    for side in ("left", "right"):
        tokenizer = load_tokenizer("tiny-llama", padding_side=side)
        batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
        with torch.no_grad():
            scores[side] = model(**batch).end_scores
        alone = [model(**tokenizer([text], return_tensors="pt")).end_scores.item() for text in TEXTS]
        assert torch.allclose(scores[side], torch.tensor(alone), atol=1e-4)
    assert torch.allclose(scores["left"], scores["right"], atol=1e-4)


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    for name in ("tiny-llama", "tiny-bert"):
        model = ScoreModel.from_backbone(name, kind="cost").eval()
        model.score_config.score_mean, model.score_config.score_std = 0.25, 2.0
        tokenizer = load_tokenizer(name)
        batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
        model.save_pretrained(tmp_path / name, tokenizer)
        loaded = ScoreModel.from_pretrained(tmp_path / name)
        with torch.no_grad():
            assert torch.equal(model(**batch).end_scores, loaded(**batch).end_scores)
        assert loaded.score_config == model.score_config
        assert (tmp_path / name / "model.safetensors").exists()


def test_lora_backbone_saves_merged(tmp_path):
    from saferlhf.config import LoraConfig
    from saferlhf.models.loading import apply_lora

    model = ScoreModel.from_backbone("tiny-llama", kind="reward")
    model.backbone = apply_lora(model.backbone, LoraConfig(enabled=True, r=4), task_type="FEATURE_EXTRACTION")
    for name, parameter in model.backbone.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)  # make the adapter change the output
    model.eval()
    tokenizer = load_tokenizer("tiny-llama")
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    model.save_pretrained(tmp_path / "lora", tokenizer)
    loaded = ScoreModel.from_pretrained(tmp_path / "lora")
    with torch.no_grad():
        assert torch.allclose(model(**batch).end_scores, loaded(**batch).end_scores, atol=1e-4)
