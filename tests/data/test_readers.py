"""Readers: every file type, folders, dataset ids; each row tagged with the right location."""

from __future__ import annotations

import gzip
import json

import pytest

from saferlhf.data import readers
from saferlhf.data.readers import DataFormatError, read_rows

from .files import good_row, write_csv, write_jsonl


def test_jsonl_lines_are_1_based_blank_lines_skipped_bad_json_kept_as_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good_row(1)) + "\n\n{not json\n" + json.dumps(good_row(2)) + "\n")
    rows = read_rows(str(path))
    assert [r.location for r in rows] == [f"{path}:1", f"{path}:3", f"{path}:4"]
    assert rows[0].row["prompt"] == "question 1?" and rows[0].error == ""
    assert rows[1].row is None and "invalid JSON" in rows[1].error
    assert read_rows(str(path), limit=2)[-1].location == f"{path}:3"


def test_jsonl_gz(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps(good_row(1)) + "\n" + json.dumps(good_row(2)) + "\n")
    rows = read_rows(str(path))
    assert [r.row["prompt"] for r in rows] == ["question 1?", "question 2?"]
    assert rows[1].location == f"{path}:2"


def test_json_list_and_data_object_use_indices(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([good_row(0), good_row(1)]))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [good_row(0), good_row(1), good_row(2)]}))
    assert [r.location for r in read_rows(str(listed))] == [f"{listed}:#0", f"{listed}:#1"]
    assert len(read_rows(str(wrapped))) == 3
    assert len(read_rows(str(wrapped), limit=2)) == 2


def test_json_file_holding_json_lines_is_read_as_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "train.json", [good_row(0), good_row(1)])
    assert [r.location for r in read_rows(str(path))] == [f"{path}:1", f"{path}:2"]


def test_json_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"prompt": "a"},\n{oops}\n]')
    with pytest.raises(DataFormatError, match=r"broken\.json:3: invalid JSON"):
        read_rows(str(broken))
    scalar = tmp_path / "scalar.json"
    scalar.write_text('{"rows": 3}')
    with pytest.raises(DataFormatError, match="must hold a list"):
        read_rows(str(scalar))


def test_csv_lines_count_the_header_and_multiline_cells(tmp_path):
    path = tmp_path / "pairs.csv"
    rows = [good_row(0), good_row(1, response_0="line one\nline two"), good_row(2)]
    write_csv(path, rows, list(good_row()))
    read = read_rows(str(path))
    assert [r.location for r in read] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert read[1].row["response_0"] == "line one\nline two"
    assert read[0].row["better_response_id"] == "0"  # CSV cells are text; adapters convert them


def test_csv_row_with_extra_cells_is_an_error_row(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text("prompt,response_0,response_1\na,b,c\na,b,c,d,e\n")
    read = read_rows(str(path))
    assert read[0].error == ""
    assert read[1].location == f"{path}:3" and "2 more cells than the header's 3 columns" in read[1].error


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([good_row(0), good_row(1, safer_response_id=0)]), path)
    read = read_rows(str(path))
    assert [r.location for r in read] == [f"{path}:#0", f"{path}:#1"]
    assert read[1].row["safer_response_id"] == 0 and read[1].row["is_response_0_safe"] is False


def test_unknown_extension_and_missing_path(tmp_path):
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(DataFormatError, match="unknown file type"):
        read_rows(str(tmp_path / "rows.txt"))
    with pytest.raises(DataFormatError, match="no such file"):
        read_rows(str(tmp_path / "absent.jsonl"))


def test_folder_picks_the_only_split_default_train_or_the_named_one(tmp_path):
    only = tmp_path / "harmless-base"
    only.mkdir()
    write_jsonl(only / "test.jsonl", [good_row(0)])
    assert read_rows(str(only))[0].location == f"{only / 'test.jsonl'}:1"

    both = tmp_path / "both"
    both.mkdir()
    write_jsonl(both / "train.jsonl", [good_row(0), good_row(1)])
    write_jsonl(both / "test.jsonl", [good_row(2)])
    assert len(read_rows(str(both))) == 2
    assert len(read_rows(str(both), split="test")) == 1
    with pytest.raises(DataFormatError, match=r"no split 'validation' \(available: test, train\)"):
        read_rows(str(both), split="validation")

    no_train = tmp_path / "no_train"
    no_train.mkdir()
    write_jsonl(no_train / "a.jsonl", [good_row(0)])
    write_jsonl(no_train / "b.jsonl", [good_row(0)])
    with pytest.raises(DataFormatError, match="several splits"):
        read_rows(str(no_train))


def test_folder_with_hub_layout_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "repo" / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([good_row(0), good_row(1)]), data / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist([good_row(2)]), data / "train-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist([good_row(3)]), data / "test-00000-of-00001.parquet")
    assert [r.row["prompt"] for r in read_rows(str(tmp_path / "repo"))] == ["question 0?", "question 1?", "question 2?"]
    assert len(read_rows(str(tmp_path / "repo"), limit=2)) == 2


def test_empty_folder_names_its_subfolders(tmp_path):
    (tmp_path / "harmless-base").mkdir()
    with pytest.raises(DataFormatError, match="sub-folders: harmless-base"):
        read_rows(str(tmp_path))


def test_save_to_disk_folder(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([good_row(0), good_row(1)]),
                 "test": Dataset.from_list([good_row(2)])}).save_to_disk(str(tmp_path / "saved"))
    rows = read_rows(str(tmp_path / "saved"), split="test")
    assert rows[0].location == f"{tmp_path / 'saved'}[test]:#0" and rows[0].row["prompt"] == "question 2?"


def test_dataset_id_goes_to_load_dataset_with_data_dir(monkeypatch):
    from datasets import Dataset

    calls = []

    def fake_load_dataset(repo, data_dir=None, split=None):
        calls.append((repo, data_dir, split))
        return Dataset.from_list([good_row(0), good_row(1), good_row(2)])

    monkeypatch.setattr("datasets.load_dataset", fake_load_dataset)
    rows = read_rows("Anthropic/hh-rlhf/harmless-base", split="test", limit=2)
    assert calls == [("Anthropic/hh-rlhf", "harmless-base", "test")]
    assert [r.location for r in rows] == ["Anthropic/hh-rlhf/harmless-base[test]:#0",
                                          "Anthropic/hh-rlhf/harmless-base[test]:#1"]


def test_dataset_id_failure_names_the_id(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr("datasets.load_dataset", offline)
    with pytest.raises(DataFormatError, match="PKU-Alignment/PKU-SafeRLHF: could not load .* no network"):
        read_rows("PKU-Alignment/PKU-SafeRLHF")


def test_is_dataset_id():
    assert readers.is_dataset_id("PKU-Alignment/PKU-SafeRLHF")
    assert readers.is_dataset_id("Anthropic/hh-rlhf/helpful-base")
    assert not readers.is_dataset_id("data/missing.jsonl")
    assert not readers.is_dataset_id("single_name")
