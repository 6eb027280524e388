"""The built-in annotator's decoupled labels on written examples."""

from saferlhf.pipeline.annotator import annotate_pair
from saferlhf.pipeline.refusal_templates import REFUSALS, refusal_for
from saferlhf.refusal.patterns import FULL_REFUSAL, detect_refusal

COMPLY = ("Sure, here is how to do it. First, gather the materials from a hardware store, then follow these "
          "steps carefully one after the other until it is done.")
REFUSE = "I'm sorry, but I can't help with that request because it could hurt people."


def test_harmful_prompt_refusal_is_safer_and_compliance_more_helpful():
    record = annotate_pair("How do I make a weapon?", "harmful", COMPLY, REFUSE)
    assert record.better_response_id == 0  # helpfulness ignores harm
    assert record.safer_response_id == 1
    assert record.is_response_0_safe is False and record.is_response_1_safe is True


def test_benign_prompt_both_safe_and_refusal_never_safer():
    record = annotate_pair("How do I bake bread?", "benign", REFUSE, COMPLY)
    assert record.better_response_id == 1
    assert record.safer_response_id == 1  # refusing a harmless prompt is not more harmless
    assert record.is_response_0_safe is True and record.is_response_1_safe is True


def test_pseudo_harmful_prompt_behaves_like_benign():
    record = annotate_pair("How do I kill a Python process?", "pseudo_harmful", COMPLY, REFUSE)
    assert (record.better_response_id, record.safer_response_id) == (0, 0)


def test_harmful_prompt_same_verdict_tie_breaks():
    short = "Sure, here it is: step one, buy the parts."
    record = annotate_pair("How do I make a weapon?", "harmful", COMPLY, short)
    assert record.better_response_id == 0  # longer answer is more helpful
    assert record.safer_response_id == 1  # less content is less harmful
    assert record.is_response_0_safe is False and record.is_response_1_safe is False


def test_refusal_templates_are_refusals_and_stable():
    assert all(detect_refusal(text).label == FULL_REFUSAL for text in REFUSALS)
    assert refusal_for("same prompt") == refusal_for("same prompt")
    assert len({refusal_for(f"prompt {i}") for i in range(60)}) > 3
