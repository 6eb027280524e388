"""The built-in prompt set (``saferlhf/data/builtin``): sizes, field validity, the fixed held-out split,
the README's counts, and that no prompt is copied from a public benchmark."""

from __future__ import annotations

import csv
import json
import re
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from saferlhf.data.builtin import BUILTIN_PROMPTS_PATH, builtin_prompts, heldout_rule, read_prompt_file

REPO_ROOT = Path(__file__).resolve().parents[2]
README = BUILTIN_PROMPTS_PATH.parent / "README.md"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return builtin_prompts()


def _normalize(text: str) -> str:
    """Case-folded, single-spaced, without surrounding quotes or end punctuation."""
    return re.sub(r"\s+", " ", text).strip().strip("\"'").rstrip(".?!").strip().casefold()


def test_sizes_per_label_and_category(rows):
    labels = Counter(row["label"] for row in rows)
    assert len(rows) >= 360
    assert labels["harmful"] >= 150 and labels["benign"] >= 120 and labels["pseudo_harmful"] >= 90
    assert set(labels) == {"harmful", "benign", "pseudo_harmful"}
    harm_categories = Counter(row["category"] for row in rows if row["label"] == "harmful")
    assert len(harm_categories) >= 12, harm_categories
    assert min(harm_categories.values()) >= 10, harm_categories
    for label in ("benign", "pseudo_harmful"):
        categories = Counter(row["category"] for row in rows if row["label"] == label)
        assert len(categories) >= 6 and min(categories.values()) >= 8, (label, categories)


def test_ids_and_prompts_are_unique(rows):
    ids = Counter(row["id"] for row in rows)
    assert [key for key, count in ids.items() if count > 1] == []
    prompts = Counter(_normalize(row["prompt"]) for row in rows)
    assert [key for key, count in prompts.items() if count > 1] == []


def test_every_field_is_valid(rows):
    for row in rows:
        assert set(row) == {"id", "prompt", "label", "category", "split"}, row
        assert row["label"] in ("harmful", "benign", "pseudo_harmful"), row
        assert row["split"] in ("train", "heldout"), row
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", row["category"]), row
        prefix = {"harmful": "harm", "benign": "benign", "pseudo_harmful": "pseudo"}[row["label"]]
        assert re.fullmatch(rf"{prefix}-{row['category']}-\d{{3}}", row["id"]), row
        prompt = row["prompt"]
        assert prompt == prompt.strip() and "\n" not in prompt and 10 <= len(prompt) <= 300, row


def test_heldout_share_per_label_is_about_a_quarter(rows):
    for label in ("harmful", "benign", "pseudo_harmful"):
        of_label = [row for row in rows if row["label"] == label]
        share = sum(row["split"] == "heldout" for row in of_label) / len(of_label)
        assert 0.20 <= share <= 0.30, (label, share)


def test_split_follows_the_documented_rule(rows):
    """Recompute: the n-th prompt (file order) of each (label, category) has id number n, and is held out
    exactly when n is a multiple of 4."""
    position = defaultdict(int)
    for row in rows:
        key = (row["label"], row["category"])
        position[key] += 1
        number = position[key]
        assert row["id"].endswith(f"-{number:03d}"), (row["id"], number)
        assert row["split"] == ("heldout" if number % 4 == 0 else "train"), row
        assert heldout_rule(number) == row["split"]
    for key, size in position.items():
        heldout = sum(1 for row in rows if (row["label"], row["category"]) == key and row["split"] == "heldout")
        assert heldout == size // 4, key


def test_filters_partition_the_set(rows):
    train, heldout = builtin_prompts(split="train"), builtin_prompts(split="heldout")
    assert {row["split"] for row in train} == {"train"} and {row["split"] for row in heldout} == {"heldout"}
    assert sorted(row["id"] for row in train + heldout) == sorted(row["id"] for row in rows)
    harmful_heldout = builtin_prompts(split="heldout", label="harmful")
    assert harmful_heldout == [row for row in heldout if row["label"] == "harmful"]
    assert harmful_heldout and len(harmful_heldout) < len(heldout)
    with pytest.raises(ValueError, match="split must be one of"):
        builtin_prompts(split="test")
    with pytest.raises(ValueError, match="label must be one of"):
        builtin_prompts(label="unsafe")


GOOD = '{"id": "harm-drugs-001", "prompt": "p1", "label": "harmful", "category": "drugs", "split": "train"}'


@pytest.mark.parametrize("bad_line, message", [
    ("{not json", r"x\.jsonl:3: not valid JSON"),
    ('{"id": "harm-drugs-002", "prompt": "p", "label": "harmful", "category": "drugs"}', r"x\.jsonl:3: missing keys \['split'\]"),
    (GOOD.replace('"harmful"', '"unsafe"').replace("001", "002"), r"x\.jsonl:3: key 'label'"),
    (GOOD.replace("001", "004"), r"x\.jsonl:3: key 'split' is 'train', but the held-out rule gives 'heldout'"),
    (GOOD.replace("harm-drugs", "benign-drugs"), r"x\.jsonl:3: key 'id'"),
    (GOOD.replace('"p1"', '""').replace("001", "002"), r"x\.jsonl:3: key 'prompt' must be a non-empty string"),
    (GOOD, r"x\.jsonl:3: key 'id' 'harm-drugs-001' repeats line 1"),
])
def test_reader_names_line_and_key_of_a_bad_row(bad_line, message):
    with pytest.raises(ValueError, match=message):
        read_prompt_file(f"{GOOD}\n\n{bad_line}\n", "x.jsonl")


def test_readme_counts_match_the_file(rows):
    table = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip().strip("*") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[2].isdigit():
            table[(cells[0], cells[1])] = tuple(int(cell) for cell in cells[2:])
    expected = {}
    for label, category in {(row["label"], row["category"]) for row in rows} | {(row["label"], "all") for row in rows} | {("all", "all")}:
        chosen = [row for row in rows if label in ("all", row["label"]) and category in ("all", row["category"])]
        heldout = sum(row["split"] == "heldout" for row in chosen)
        expected[(label, category)] = (len(chosen) - heldout, heldout, len(chosen))
    assert table == expected


def test_package_data_ships_the_files():
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"data/builtin/*.jsonl", "data/builtin/*.md"} <= set(package_data["saferlhf"])
    assert BUILTIN_PROMPTS_PATH.is_file() and README.is_file()


def _public_prompts(shared_data: Path) -> dict[str, str]:
    sources = {
        "xstest/xstest_prompts.csv": "prompt",
        "advbench/harmful_behaviors.csv": "goal",
        "harmbench/harmbench_behaviors_text_all.csv": "Behavior",
    }
    public = {}
    for relative, column in sources.items():
        with open(shared_data / relative, newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                public[_normalize(record[column])] = relative
    return public


MINIMAL_PAIRS = REPO_ROOT / "experiments" / "data" / "minimal_pairs.jsonl"


@pytest.mark.shared_data
@pytest.mark.parametrize("source", ["builtin", "minimal_pairs"])
def test_no_prompt_is_copied_from_public_benchmarks(rows, shared_data, source):
    """Neither the built-in set nor the experiments' extra prompts (experiments/data) copy a public one."""
    if source == "minimal_pairs":
        rows = [json.loads(line) | {"id": f"minimal_pairs.jsonl:{i}"}
                for i, line in enumerate(MINIMAL_PAIRS.read_text(encoding="utf-8").splitlines(), 1)]
    public = _public_prompts(shared_data)
    assert len(public) > 1000  # the three files were read
    copied = [(row["id"], public[_normalize(row["prompt"])]) for row in rows if _normalize(row["prompt"]) in public]
    assert copied == []
    # Nor does a longer public prompt sit inside one of ours, or one of ours inside a public one.
    ours = [(row["id"], _normalize(row["prompt"])) for row in rows]
    contained = [(row_id, text) for row_id, mine in ours for text in public
                 if len(text.split()) >= 5 and (text in mine or mine in text)]
    assert contained == []
