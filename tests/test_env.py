"""saferlhf env: the facts a bug report needs, printed and optionally as JSON."""

from __future__ import annotations

import json

from saferlhf import cli


def test_env_prints_versions_devices_and_precision(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAFERLHF_NO_BF16", "1")
    assert cli.main(["env", f"output={tmp_path / 'env.json'}"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "env.json").read_text())
    assert report["packages"]["torch"] != "not installed" and report["packages"]["saferlhf"] == "0.1.0"
    assert report["cpu"]["cores"] >= 1 and report["precision_auto"] == "fp32"  # SAFERLHF_NO_BF16 wins
    assert report["environment"]["SAFERLHF_NO_BF16"] == "1"
    assert "precision: auto -> fp32" in printed and "torch" in printed and "native bf16" in printed
