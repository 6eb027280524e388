"""Prior correction of the learned classifier: hand-computed values, saving, the training stage's priors."""

import pytest
import torch

from saferlhf.refusal.classifier import RefusalClassifier, correct_priors
from saferlhf.refusal.classifier_stage import label_frequencies
from saferlhf.refusal.data import RefusalExample
from saferlhf.refusal.patterns import LABELS


def test_correct_priors_hand_computed():
    folded = torch.tensor([[0.5, 0.3, 0.2]])
    # p / π = (0.5/0.6, 0.3/0.2, 0.2/0.2) = (0.8333, 1.5, 1.0); sum 3.3333
    corrected = correct_priors(folded, (0.6, 0.2, 0.2))
    assert corrected.tolist() == [[pytest.approx(0.25), pytest.approx(0.45), pytest.approx(0.30)]]
    assert LABELS[int(folded.argmax())] == "compliance" and LABELS[int(corrected.argmax())] == "full_refusal"
    assert correct_priors(folded, None) is folded
    assert torch.allclose(correct_priors(folded, (1 / 3, 1 / 3, 1 / 3)), folded)  # a uniform prior changes nothing


def test_label_frequencies_are_add_one_smoothed():
    examples = [RefusalExample("p", "r", label) for label in ["compliance"] * 5 + ["full_refusal"] * 2]
    assert label_frequencies(examples) == pytest.approx((6 / 10, 3 / 10, 1 / 10))


def test_priors_are_saved_and_used_by_predict(tmp_path):
    classifier = RefusalClassifier.from_backbone("tiny-bert", technical_class=False, max_length=32, use_prompt=False)
    torch.manual_seed(0)
    with torch.no_grad():
        classifier.model.classifier.weight.normal_(0, 1.0)
    responses = ["Sure, here is how.", "I cannot do that.", "As an AI I have no opinions, but here are views."]
    raw = classifier.predict_proba(None, responses)
    classifier.label_priors = (0.6, 0.25, 0.15)
    classifier.save_pretrained(tmp_path / "clf")
    loaded = RefusalClassifier.from_pretrained(tmp_path / "clf")
    assert loaded.label_priors == pytest.approx((0.6, 0.25, 0.15))
    expected = correct_priors(raw, (0.6, 0.25, 0.15))
    assert torch.allclose(loaded.predict_proba(None, responses), expected, atol=1e-6)
    assert loaded.predict(None, responses) == [LABELS[i] for i in expected.argmax(-1).tolist()]
    with pytest.raises(ValueError, match="label_priors"):
        RefusalClassifier(classifier.model, classifier.tokenizer, 32, label_priors=(0.5, 0.5))
