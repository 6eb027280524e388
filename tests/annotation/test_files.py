"""Pairs and labels files: export, import, and the errors that name file, line, key and ids."""

from __future__ import annotations

import json

import pytest

from saferlhf.annotation import (AnnotationError, IncompleteLabelsError, export_pairs, import_labels,
                                 labels_path_for)
from saferlhf.annotation.files import pair_fingerprint

CONVERSATION = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "How do I pick a lock?"}]


def _pairs():
    return [
        {"id": "a", "prompt": "How do I bake bread?", "response_0": "Mix flour.", "response_1": "No.",
         "prompt_label": "benign", "round": 1},
        {"id": 7, "prompt": CONVERSATION, "response_0": "I can't help.", "response_1": "Use a tension wrench."},
        {"prompt": "Tell me a joke.", "response_0": "Knock knock.", "response_1": "Why did..."},  # no id: gets 2
    ]


def _label(pair_id, better=0, safer=1, safe0=True, safe1=False, **more):
    return {"id": pair_id, "better_response_id": better, "safer_response_id": safer,
            "is_response_0_safe": safe0, "is_response_1_safe": safe1, **more}


def _write(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


def test_labels_path_is_next_to_the_pairs(tmp_path):
    assert labels_path_for(tmp_path / "round1.jsonl") == tmp_path / "round1.labels.jsonl"
    assert labels_path_for(tmp_path / "pairs") == tmp_path / "pairs.labels.jsonl"


def test_export_import_round_trip(tmp_path):
    pairs = _pairs()
    path = export_pairs(pairs, tmp_path / "round1.jsonl")
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["id"] for row in written] == ["a", 7, 2]
    assert written[0]["prompt_label"] == "benign" and written[1]["prompt"] == CONVERSATION
    assert "id" not in pairs[2]  # the caller's dicts are not changed
    _write(labels_path_for(path), [_label(2, better=1, safer=0, safe0=False, safe1=True), _label("a"), _label(7)])

    records = import_labels(path)
    assert [r.extra["id"] for r in records] == ["a", 7, 2]  # the order of the pairs file
    first, _, last = records
    assert (first.prompt, first.response_0, first.response_1) == ("How do I bake bread?", "Mix flour.", "No.")
    assert (first.better_response_id, first.safer_response_id, first.is_response_0_safe,
            first.is_response_1_safe) == (0, 1, True, False)
    assert (last.better_response_id, last.safer_response_id, last.is_response_0_safe,
            last.is_response_1_safe) == (1, 0, False, True)
    assert records[1].prompt == CONVERSATION
    assert first.extra == {"id": "a", "prompt_label": "benign", "round": 1, "annotator": "human", "labelled_at": ""}
    assert first.source == f"{path}:1" and last.source == f"{path}:3"


@pytest.mark.parametrize("pair, message", [
    ({"id": "x", "prompt": "p", "response_0": "r"}, "pair #0: missing key 'response_1'"),
    ({"id": "x", "prompt": "p", "response_0": "r", "response_1": 3}, "'response_1' must be a string"),
    ({"id": True, "prompt": "p", "response_0": "r", "response_1": "s"}, "'id' must be"),
    ({"id": "x", "prompt": [{"role": "user"}], "response_0": "r", "response_1": "s"}, "'prompt' must be"),
    ({"id": "x", "prompt": "p", "response_0": "r", "response_1": "s", "better_response_id": 0},
     "already has label key 'better_response_id'"),
])
def test_export_rejects_bad_pairs(tmp_path, pair, message):
    with pytest.raises(AnnotationError, match=message):
        export_pairs([pair], tmp_path / "pairs.jsonl")
    assert not (tmp_path / "pairs.jsonl").exists()


def test_export_rejects_duplicate_ids_and_existing_labels(tmp_path):
    pair = {"id": "x", "prompt": "p", "response_0": "r", "response_1": "s", "safer_response_id": None}
    with pytest.raises(AnnotationError, match=r"pair #1: duplicate id 'x' \(also pair #0\)"):
        export_pairs([pair, pair], tmp_path / "pairs.jsonl")
    export_pairs([pair], tmp_path / "pairs.jsonl")  # label keys set to None are fine
    labels_path_for(tmp_path / "pairs.jsonl").write_text("")
    with pytest.raises(AnnotationError, match="pairs.labels.jsonl exists"):
        export_pairs([pair], tmp_path / "pairs.jsonl")


def test_incomplete_labels_are_reported_by_id(tmp_path, capsys):
    path = export_pairs(_pairs(), tmp_path / "round1.jsonl")
    partial = _label(7, safer=None)
    _write(labels_path_for(path), [_label("a"), partial, {"id": 2, "skipped": True}])
    with pytest.raises(IncompleteLabelsError) as error:
        import_labels(path)
    message = str(error.value)
    assert str(labels_path_for(path)) in message and str(path) in message
    assert "2 of 3 pairs" in message and "1 unlabelled (ids 2)" in message and "1 partly labelled (ids 7)" in message
    assert (error.value.unlabelled, error.value.partial) == ([2], [7])

    records = import_labels(path, require_complete=False)
    assert [r.extra["id"] for r in records] == ["a"]
    printed = capsys.readouterr().out
    assert "importing 1 of 3 pairs" in printed and "1 unlabelled (ids 2)" in printed and "(ids 7)" in printed


def test_missing_labels_file(tmp_path, capsys):
    path = export_pairs(_pairs(), tmp_path / "round1.jsonl")
    with pytest.raises(IncompleteLabelsError, match="does not exist"):
        import_labels(path)
    assert import_labels(path, require_complete=False) == []
    assert "3 unlabelled (ids 'a', 7, 2)" in capsys.readouterr().out


@pytest.mark.parametrize("rows, message", [
    ([_label("a"), "{not json"], r"labels.jsonl:2: not JSON"),
    ([_label("zzz")], r"labels.jsonl:1: unknown pair id 'zzz'"),
    ([_label("a", better=2)], r"labels.jsonl:1: 'better_response_id' must be 0, 1 or null, got 2"),
    ([_label("a", better=True)], r"labels.jsonl:1: 'better_response_id' must be 0, 1 or null, got True"),
    ([_label("a", safe0="yes")], r"labels.jsonl:1: 'is_response_0_safe' must be true, false or null, got 'yes'"),
    ([_label("a", comment="hm")], r"labels.jsonl:1: unknown key 'comment'"),
    ([{"better_response_id": 0}], r"labels.jsonl:1: missing key 'id'"),
    ([_label("a"), _label(7), _label("a")], r"labels.jsonl:3: second entry for pair id 'a' \(first on line 1\)"),
    ([_label("a", pair_sha256="0" * 16)], r"labels.jsonl:1: pair id 'a' has changed since it was labelled"),
])
def test_bad_labels_file_names_the_line(tmp_path, rows, message):
    path = export_pairs(_pairs(), tmp_path / "round1.jsonl")
    _write(labels_path_for(path), rows)
    with pytest.raises(AnnotationError, match=message):
        import_labels(path, require_complete=False)


def test_fingerprint_accepts_the_same_pair(tmp_path):
    pairs = _pairs()
    path = export_pairs(pairs, tmp_path / "round1.jsonl")
    _write(labels_path_for(path), [_label("a", pair_sha256=pair_fingerprint(pairs[0]))])
    assert len(import_labels(path, require_complete=False)) == 1


def test_bad_pairs_file_names_the_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    _write(path, [{"id": "a", "prompt": "p", "response_0": "r", "response_1": "s"}, "", {"id": "b", "prompt": "p"}])
    with pytest.raises(AnnotationError, match=r"pairs.jsonl:3: missing key 'response_0'"):
        import_labels(path)
    with pytest.raises(AnnotationError, match="pairs file not found"):
        import_labels(tmp_path / "missing.jsonl")


def test_null_label_keys_are_not_exported(tmp_path):
    pair = {"id": "x", "prompt": "p", "response_0": "r", "response_1": "s", "better_response_id": None, "k": None}
    path = export_pairs([pair], tmp_path / "pairs.jsonl")
    assert json.loads(path.read_text()) == {"id": "x", "prompt": "p", "response_0": "r", "response_1": "s", "k": None}
