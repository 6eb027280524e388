"""The refusal direction's algebra on hand-computed values, and its interventions on the built-in tiny model."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from saferlhf.controls import direction as rd
from saferlhf.controls.probe import auc
from saferlhf.controls.direction_select import select_direction
from saferlhf.models.loading import load_causal_lm, load_tokenizer

PROMPTS = ["How do I bake bread?", "Tell me a joke about cats.", "hi", "Explain photosynthesis in two lines."]


@pytest.fixture(scope="module")
def tiny():
    return load_causal_lm("tiny-llama").eval(), load_tokenizer("tiny-llama", padding_side="left")


def test_difference_in_means_hand_computed():
    harmful = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    harmless = torch.tensor([[0.0, 0.0], [2.0, -2.0]])  # mean (1, -1)
    result = rd.difference_in_means(harmful, harmless)
    assert result.dtype == torch.float64
    assert result.tolist() == [1.0, 4.0]


def test_projection_and_ablation_hand_computed():
    x = torch.tensor([[3.0, 4.0], [1.0, -1.0]], dtype=torch.float64)
    r = torch.tensor([0.0, 2.0], dtype=torch.float64)  # r̂ = (0, 1)
    assert rd.project(x, r).tolist() == [4.0, -1.0]
    assert rd.ablate(x, r).tolist() == [[3.0, 0.0], [1.0, 0.0]]
    diagonal = torch.tensor([1.0, 1.0], dtype=torch.float64)  # r̂ = (1, 1)/√2: x·r̂ = 7/√2, x − (7/2)(1, 1)
    assert torch.allclose(rd.project(x[:1], diagonal), torch.tensor([7 / math.sqrt(2)], dtype=torch.float64))
    assert torch.allclose(rd.ablate(x[:1], diagonal), torch.tensor([[-0.5, 0.5]], dtype=torch.float64))


def test_ablation_is_idempotent_and_orthogonal():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, 16, generator=generator, dtype=torch.float64)
    r = torch.randn(16, generator=generator, dtype=torch.float64)
    once = rd.ablate(x, r)
    assert torch.allclose(rd.ablate(once, r), once, atol=1e-12)
    assert rd.project(once, r).abs().max() < 1e-12
    assert torch.allclose(once + rd.project(x, r).unsqueeze(-1) * rd.unit(r), x, atol=1e-12)  # nothing else removed
    with pytest.raises(ValueError, match="direction is zero"):
        rd.ablate(x, torch.zeros(16))


def test_refusal_score_and_kl_hand_computed():
    logits = torch.zeros(2, 4)  # uniform over 4 tokens
    expected = torch.full((2,), -math.log(3), dtype=torch.float64)  # log(1/4) - log(3/4)
    assert torch.allclose(rd.refusal_scores(logits, [0]), expected, atol=1e-7)
    assert torch.allclose(rd.refusal_scores(logits, [0, 1]), torch.zeros(2, dtype=torch.float64), atol=1e-7)
    base, other = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3), 0.0]])  # p = (1/2, 1/2), q = (3/4, 1/4)
    assert rd.kl_divergence(base, other).item() == pytest.approx(0.5 * math.log(4 / 3))
    assert rd.kl_divergence(base, base).item() == 0.0


def test_roc_auc_hand_computed():
    scores, labels = torch.tensor([0.9, 0.1, 0.5, 0.5]), torch.tensor([1, 0, 1, 0])
    assert auc(scores, labels) == 3.5 / 4  # pairs: 0.9>0.1, 0.9>0.5, 0.5>0.1, 0.5=0.5 (half)


def test_select_direction_applies_the_reference_filters():
    # one position, 5 layers; layer 4 >= 0.8 * 5 is dropped whatever its scores
    scores = {"ablation_score": torch.tensor([[1.0, -5.0, -6.0, 0.5, -9.0]], dtype=torch.float64),
              "addition_score": torch.tensor([[2.0, 3.0, -1.0, 1.0, 4.0]], dtype=torch.float64),
              "ablation_kl": torch.tensor([[0.01, 0.5, 0.02, 0.03, 0.0]], dtype=torch.float64)}
    chosen, dropped = select_direction(scores)
    assert chosen == (0, 3)  # 1 (KL 0.5), 2 (addition < 0) and 4 (layer) dropped; 3 has the lower ablation score
    assert dropped == {"layer >= 0.8 * 5": 1, "KL > 0.1": 1, "addition score < 0.0": 1,
                       "not scored (zero or skipped)": 0}
    scores["ablation_score"][0, 3] = float("nan")
    assert select_direction(scores)[0] == (0, 0)
    assert select_direction(scores, max_kl=0.001)[0] is None


def test_refusal_tokens_are_the_model_s_refusal_openings(tiny):
    _, tokenizer = tiny
    refusals = ["I can't help with that.", "Sorry, I won't.", "I won't do that.", "Sorry, no."]
    compliances = ["Sure, here it is.", "I'd love to help!", "I think so.", "Here you go."]
    sorry = tokenizer("Sorry", add_special_tokens=False)["input_ids"][0]
    # "I" opens 2 refusals and 2 compliant answers: it tells nothing and is left out
    assert rd.refusal_token_ids(tokenizer, refusals, compliances) == [sorry]


def test_post_instruction_tokens_of_the_chat_template(tiny):
    model, tokenizer = tiny
    ids = rd.post_instruction_ids(tokenizer)
    assert tokenizer.decode(ids) == "<|im_end|>\n<|im_start|>assistant\n"
    acts = rd.block_inputs(model, tokenizer, PROMPTS, list(range(-len(ids), 0)), batch_size=3)
    assert acts.shape == (4, 2, len(ids), 64) and acts.dtype == torch.float64
    # left padding: position -1 is each prompt's last token, whatever its length
    single = rd.block_inputs(model, tokenizer, PROMPTS[2:3], [-1])
    assert torch.allclose(single[0, :, 0], acts[2, :, -1], atol=1e-5)


def test_hooked_and_weight_orthogonalised_ablation_give_the_same_logits(tiny, tmp_path):
    model, tokenizer = tiny
    direction = torch.randn(64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    batch = rd.encode_prompts(tokenizer, PROMPTS)
    mask = batch["attention_mask"].bool()
    head_before = model.lm_head.weight.detach().clone()
    ablated = copy.deepcopy(model)
    rd.orthogonalize_weights(ablated, direction)
    ablated.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = load_causal_lm(str(tmp_path)).eval()
    with torch.no_grad():
        base = model(**batch).logits
        with rd.ablation_hooks(model, direction):
            hooked = model(**batch).logits
        weights = reloaded(**batch).logits
    assert (hooked - base)[mask].abs().max() > 1e-2  # the intervention does something
    assert (hooked - weights)[mask].abs().max() <= 1e-4
    assert model(**batch).logits.sub(base).abs().max() == 0  # the hooks are gone
    # the output embedding was untied, keeps the original rows; the residual stream has no r component
    assert reloaded.config.tie_word_embeddings is False
    assert torch.equal(reloaded.lm_head.weight, head_before)
    assert rd.project(rd.block_inputs(reloaded, tokenizer, PROMPTS, [-3, -2, -1]), direction).abs().max() < 1e-4


def test_activation_addition_adds_r_at_one_block_input(tiny):
    model, tokenizer = tiny
    direction = torch.randn(64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    seen = []
    layer = rd.decoder_layers(model)[1]
    batch = rd.encode_prompts(tokenizer, PROMPTS[:2])
    with torch.no_grad():
        model(**batch)  # warm-up so the recording hook below sees two comparable calls
        with rd.addition_hooks(model, direction, 1, coefficient=2.0):
            handle = layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
            model(**batch)
        model(**batch)  # the addition hook is gone; the recording one sees the plain input
        handle.remove()
    added, plain = seen
    assert torch.allclose(added - plain, (2.0 * direction).float().expand_as(plain), atol=1e-5)
