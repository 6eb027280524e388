"""Every expected error reaches the user as one message on stderr and exit status 2 (a traceback only with --debug)."""

from __future__ import annotations

import json

import pytest

from saferlhf.cli import main


def pairs_file(path, count=24):
    rows = [{"prompt": f"q{i}", "response_0": "a", "response_1": f"b {i}", "better_response_id": i % 2,
             "safer_response_id": i % 2, "is_response_0_safe": True, "is_response_1_safe": False} for i in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def reward_args(tmp_path, data, *extra):
    return ["train-reward", f"data.train=[{data}]", "model.name_or_path=tiny-bert", f"output_dir={tmp_path / 'out'}",
            "data.max_length=32", "train.batch_size=4", "normalization_samples=4", "train.max_steps=2", *extra]


def expect_clean_error(capsys, argv, *fragments) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("saferlhf ")]
    assert len(lines) == 1, err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_missing_data_file(tmp_path, capsys):
    expect_clean_error(capsys, reward_args(tmp_path, tmp_path / "absent.jsonl"), "absent.jsonl")


def test_non_utf8_data_file_names_file_and_line(tmp_path, capsys):
    rows = [json.loads(line) for line in pairs_file(tmp_path / "pairs.jsonl").read_text().splitlines()]
    data = tmp_path / "pairs.json"
    data.write_bytes(json.dumps(rows, indent=1).encode().replace(b'"q3"', b'"q\xff"'))
    expect_clean_error(capsys, reward_args(tmp_path, data), "pairs.json:", "not UTF-8")


def test_bad_yaml_override(tmp_path, capsys):
    expect_clean_error(capsys, ["train-reward", "data.train=[a, b"], "data.train")


def test_divergence_stop(tmp_path, capsys):
    data = pairs_file(tmp_path / "pairs.jsonl")
    expect_clean_error(capsys, reward_args(tmp_path, data, "train.learning_rate=1e3", "train.max_grad_norm=0",
                                           "train.max_steps=8", "train.save_steps=1"), "not finite")


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main([*reward_args(tmp_path, tmp_path / "absent.jsonl"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unexpected_errors_still_raise(monkeypatch):
    from saferlhf import memory

    def broken(config):
        raise KeyError("a bug, not a user error")
    monkeypatch.setattr(memory, "run", broken)
    with pytest.raises(KeyError):
        main(["memory", "model=tiny-llama"])


def test_duplicate_yaml_key_is_refused(tmp_path, capsys):
    config = tmp_path / "reward.yaml"
    config.write_text("train:\n  learning_rate: 1e-5\n  learning_rate: 1e-3\n")
    expect_clean_error(capsys, ["train-reward", "--config", str(config)], "duplicate key 'learning_rate'", "line 3")
