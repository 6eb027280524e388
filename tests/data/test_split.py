"""The seeded train/eval split: deterministic, seed-dependent, exact sizes, prompts kept together."""

from __future__ import annotations

import subprocess
import sys

import pytest

from saferlhf.data.records import PreferenceRecord
from saferlhf.data.split import eval_size, split_records


def make_records(count: int, pairs_per_prompt: int = 1) -> list[PreferenceRecord]:
    return [PreferenceRecord(f"prompt {i // pairs_per_prompt}", f"a{i}", f"b{i}", better_response_id=0,
                             source=f"mem:{i + 1}") for i in range(count)]


def sources(records) -> list[str]:
    return [r.source for r in records]


def test_same_seed_same_split_different_seed_different_split():
    records = make_records(100)
    train, evaluation = split_records(records, 0.2, seed=42)
    again_train, again_eval = split_records(records, 0.2, seed=42)
    assert sources(train) == sources(again_train) and sources(evaluation) == sources(again_eval)
    _, other_eval = split_records(records, 0.2, seed=43)
    assert sources(other_eval) != sources(evaluation)


def test_sizes_partition_and_source_order():
    records = make_records(100)
    train, evaluation = split_records(records, 0.2, seed=0)
    assert (len(train), len(evaluation)) == (80, 20)
    assert sorted(sources(train) + sources(evaluation)) == sorted(sources(records))
    assert sources(train) == [s for s in sources(records) if s in set(sources(train))]  # source order kept
    assert split_records(records, 0.0, seed=0) == (records, [])


def test_eval_size_rounding():
    assert [eval_size(n, 0.2) for n in (0, 1, 2, 5, 32, 33)] == [0, 0, 1, 1, 6, 7]
    assert eval_size(10, 0.01) == 1  # a positive fraction always holds out something
    with pytest.raises(ValueError):
        split_records(make_records(3), 1.0, seed=0)


def test_pairs_sharing_a_prompt_stay_together_except_at_most_one_group():
    records = make_records(300, pairs_per_prompt=3)  # 100 prompts, 3 pairs each
    train, evaluation = split_records(records, 0.2, seed=7)
    assert len(evaluation) == 60
    shared = {r.prompt for r in train} & {r.prompt for r in evaluation}
    assert len(shared) <= 1


def test_split_is_the_same_in_a_fresh_python_process():
    """Python's hash() is salted per process; the split must not depend on it."""
    code = ("from saferlhf.data.split import split_records; from saferlhf.data.records import PreferenceRecord;"
            "r=[PreferenceRecord(f'p{i}', 'a', 'b', source=str(i)) for i in range(50)];"
            "print(','.join(x.source for x in split_records(r, 0.2, 3)[1]))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    records = [PreferenceRecord(f"p{i}", "a", "b", source=str(i)) for i in range(50)]
    assert runs == {",".join(sources(split_records(records, 0.2, 3)[1]))}
