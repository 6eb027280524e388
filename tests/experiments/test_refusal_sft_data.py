"""experiments/refusal_sft_data.py: harmful rows get a written refusal and keep the model's own answer."""

from __future__ import annotations

import json

from . import load_script


def _module():
    return load_script("refusal_sft_data")


def test_rows_for_pairs_refusals_with_own_answers():
    from saferlhf.pipeline.refusal_templates import refusal_for

    prompts = [{"prompt": "hurt someone", "label": "harmful", "category": "violence"},
               {"prompt": "bake bread", "label": "benign", "category": "cooking"}]
    rows = _module().rows_for(prompts, ["Sure, here is how", "Knead it"])
    assert rows[0] == {"prompt": "hurt someone", "label": "harmful", "category": "violence",
                       "response": refusal_for("hurt someone"), "harmful_response": "Sure, here is how",
                       "refusal": True}
    assert rows[1] == {"prompt": "bake bread", "label": "benign", "category": "cooking", "response": "Knead it",
                       "refusal": False}


def test_script_on_the_tiny_model(tmp_path):
    out = tmp_path / "data.jsonl"
    summary = _module().main(["--model", "tiny-llama", "--output", str(out), "--limit", "3", "--max-new-tokens", "4"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["rows"] == len(rows) == 3
    assert all(("harmful_response" in r) == (r["label"] == "harmful") for r in rows)


def test_extra_prompts_add_one_part_of_a_file_in_whole_pairs(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"p{i}", "label": "harmful" if i % 2 else "pseudo_harmful", "category": f"c{i}"}
            for i in range(8)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "data.jsonl"
    summary = _module().main(["--model", "tiny-llama", "--output", str(out), "--limit", "1", "--max-new-tokens", "2",
                              "--extra", str(pairs), "--extra-part", "1/2", "--extra-group-size", "2"])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["extra_rows"] == 4 and summary["rows"] == 5
    assert [r["prompt"] for r in written[1:]] == ["p2", "p3", "p6", "p7"]  # pairs 1 and 3 of 0..3
    assert [r["refusal"] for r in written[1:]] == [False, True, False, True]
    assert written[2]["category"] == "c3"
