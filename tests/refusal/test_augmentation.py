"""Training-data augmentations of the refusal classifier stage."""

from saferlhf.refusal.classifier_stage import cut_lengths, drop_persona
from saferlhf.refusal.data import RefusalExample

LONG = " ".join(f"w{i}" for i in range(100))


def test_drop_persona_removes_the_boilerplate_only():
    examples = [
        RefusalExample("p", "I'm sorry, but as an AI language model, I cannot do that.", "full_refusal"),
        RefusalExample("p", "As an AI language model, I do not have opinions. However, here are views.", "partial_refusal"),
        RefusalExample("p", "I am an AI language model and I cannot draw.", "full_refusal", "technical"),
        RefusalExample("p", "Paris is the capital of France.", "compliance"),
    ]
    out = drop_persona(examples, share=1.0, seed=0)
    assert [e.response for e in out] == [
        "I'm sorry, but I cannot do that.", "I do not have opinions. However, here are views.",
        "I cannot draw.", "Paris is the capital of France.",
    ]
    assert [(e.label, e.kind) for e in out] == [(e.label, e.kind) for e in examples]
    assert drop_persona(examples, share=0.0, seed=0) == examples


def test_cut_lengths_keeps_partial_refusals_whole():
    examples = [RefusalExample("p", LONG, label) for label in ("compliance", "full_refusal", "partial_refusal")]
    out = cut_lengths(examples, share=1.0, seed=3, min_words=15, max_words=50)
    lengths = [len(e.response.split()) for e in out]
    assert 15 <= lengths[0] <= 50 and 15 <= lengths[1] <= 50 and lengths[2] == 100
    assert all(LONG.startswith(e.response) for e in out)
    assert cut_lengths(examples, share=1.0, seed=3) == out  # seeded
    assert cut_lengths(examples, share=0.0, seed=3) == examples
