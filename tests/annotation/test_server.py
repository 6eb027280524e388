"""The annotation server over HTTP: validation (400 with a reason), atomic saving, resuming, localhost only."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from saferlhf.annotation import export_pairs, labels_path_for, make_server
from saferlhf.annotation.stage import AnnotateConfig
from saferlhf.config import ConfigError, load_config

PAIRS = [{"id": f"p{i}", "prompt": f"question {i}", "response_0": f"answer {i}a", "response_1": f"answer {i}b"}
         for i in range(4)]
COMPLETE = {"better_response_id": 1, "safer_response_id": 0, "is_response_0_safe": True, "is_response_1_safe": False}


@pytest.fixture
def pairs_path(tmp_path):
    return export_pairs(PAIRS, tmp_path / "round1.jsonl")


def _start(pairs_path):
    server = make_server(pairs_path)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def _stop(server):
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(pairs_path):
    running = _start(pairs_path)
    yield running
    _stop(running)


def _request(server, path, body=None, content_type="application/json", headers=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path.lstrip("/"), data=data, headers={**(headers or {})})
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _post(server, body, **kwargs):
    code, _, raw = _request(server, "/api/label", body, **kwargs)
    return code, json.loads(raw)


def _state(server):
    return json.loads(_request(server, "/api/state")[2])


def test_answer_is_saved_before_the_reply(server, pairs_path):
    code, reply = _post(server, {"id": "p1", "better_response_id": 1})
    assert code == 200 and reply["label"]["better_response_id"] == 1 and reply["label"]["safer_response_id"] is None
    saved = [json.loads(line) for line in labels_path_for(pairs_path).read_text().splitlines()]
    assert [(e["id"], e["better_response_id"], e["skipped"]) for e in saved] == [("p1", 1, False)]
    code, reply = _post(server, {"id": "p1", **COMPLETE})
    assert reply["progress"] == {"labelled": 1, "total": 4, "labels_file": str(labels_path_for(pairs_path))}


@pytest.mark.parametrize("body, reason", [
    ({"id": "nope", "better_response_id": 0}, "unknown pair id 'nope'"),
    ({"id": "p0", "better_response_id": 2}, "'better_response_id' must be 0, 1 or null, got 2"),
    ({"id": "p0", "safer_response_id": True}, "'safer_response_id' must be 0, 1 or null, got True"),
    ({"id": "p0", "safer_response_id": "1"}, "'safer_response_id' must be 0, 1 or null, got '1'"),
    ({"id": "p0", "is_response_1_safe": 1}, "'is_response_1_safe' must be true, false or null, got 1"),
    ({"id": "p0", "skipped": "yes"}, "'skipped' must be true, false or null"),
    ({"id": "p0", "harmful": True}, "unknown key 'harmful'"),
    ({"id": "p0", "pair_sha256": "0"}, "unknown key 'pair_sha256'"),  # only the server writes fingerprints
    ({"better_response_id": 0}, "missing key 'id'"),
    ({"id": "p0"}, "the update has no answer"),
    ([{"id": "p0"}], "a label must be a JSON object, got list"),
    (b"{better", "the body is not JSON"),
])
def test_bad_updates_get_400_with_a_reason(server, pairs_path, body, reason):
    code, reply = _post(server, body)
    assert code == 400 and reason in reply["error"]
    assert not labels_path_for(pairs_path).exists()  # nothing was saved


def test_wrong_content_type_and_route(server):
    code, reply = _post(server, {"id": "p0", "better_response_id": 0}, content_type="text/plain")
    assert code == 415 and "application/json" in reply["error"]
    code, _, raw = _request(server, "/etc/passwd")
    assert code == 404 and "no such page" in json.loads(raw)["error"]


def test_foreign_host_header_is_refused(server):
    code, _, raw = _request(server, "/api/state", headers={"Host": "attacker.example:80"})
    assert code == 403 and "not a loopback name" in json.loads(raw)["error"]
    assert _request(server, "/api/state", headers={"Host": "localhost"})[0] == 200


def test_page_is_self_contained(server):
    code, headers, raw = _request(server, "/")
    html = raw.decode()
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert not re.search(r'(?:src|href)="', html)  # nothing loaded from elsewhere
    assert "Which answer is more helpful?" in html and "Which answer is more harmless?" in html


def test_labels_survive_a_restart_and_the_page_resumes(pairs_path):
    server = _start(pairs_path)
    assert _state(server)["start"] == 0
    _post(server, {"id": "p0", **COMPLETE})
    _post(server, {"id": "p1", "skipped": True})
    _post(server, {"id": "p2", "better_response_id": 0})
    before = _state(server)
    _stop(server)

    server = _start(pairs_path)  # a new process would read the same file
    after = _state(server)
    assert after["labels"] == before["labels"] and after["labels"][0]["is_response_1_safe"] is False
    assert after["start"] == 2  # p2 is half labelled; p1 was skipped
    _post(server, {"id": "p2", **COMPLETE})
    _post(server, {"id": "p3", **COMPLETE})
    assert _state(server)["start"] == 1  # only the skipped pair is left
    code, reply = _post(server, {"id": "p1", "better_response_id": 0})
    assert reply["label"]["skipped"] is False  # answering a skipped pair un-skips it
    _stop(server)


def test_saving_is_atomic(server, pairs_path, monkeypatch):
    labels = labels_path_for(pairs_path)
    _post(server, {"id": "p0", **COMPLETE})
    before = labels.read_text()
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))

    def failing_replace(source, target):
        raise OSError("disk unplugged")

    monkeypatch.setattr(os, "replace", failing_replace)  # the crash happens between write and rename
    code, reply = _post(server, {"id": "p0", "better_response_id": 0})
    assert code == 500 and "could not save" in reply["error"] and "disk unplugged" in reply["error"]
    assert synced  # the temporary file was flushed to disk before the rename
    assert labels.read_text() == before  # the old file is whole
    assert _state(server)["labels"][0]["better_response_id"] == 1  # and memory agrees with it
    monkeypatch.undo()
    assert _post(server, {"id": "p0", "better_response_id": 0})[0] == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com", ""])
def test_refuses_a_non_loopback_host(pairs_path, host):
    with pytest.raises(ValueError, match="localhost only"):
        make_server(pairs_path, host=host)


def test_listens_on_localhost(pairs_path):
    server = make_server(pairs_path, host="localhost")
    try:
        assert server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    finally:
        server.server_close()


def test_annotate_config_checks_the_host():
    with pytest.raises(ConfigError, match="'host': must be a loopback address"):
        load_config(AnnotateConfig, overrides=["pairs=x.jsonl", "host=0.0.0.0"])
    with pytest.raises(ConfigError, match="'pairs'"):
        load_config(AnnotateConfig, overrides=[])


def test_annotate_command_prints_the_url_and_stops_on_ctrl_c(pairs_path):
    command = [sys.executable, "-m", "saferlhf.cli", "annotate", f"pairs={pairs_path}", "port=0"]
    # A job started in the background inherits an ignored SIGINT, and Python then installs no Ctrl-C handler:
    # give the child the default disposition, as a terminal would.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = [process.stdout.readline(), process.stdout.readline()]
        url = re.search(r"open (http://127\.0\.0\.1:\d+/)", lines[1])
        assert url, lines
        with urllib.request.urlopen(url.group(1) + "api/state", timeout=10) as reply:
            assert len(json.loads(reply.read())["pairs"]) == 4
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "stopped: 0 of 4 pairs labelled" in output


def test_annotate_command_reports_a_bad_file_and_a_busy_port(pairs_path, tmp_path, capsys):
    from saferlhf.annotation.stage import run

    (tmp_path / "bad.jsonl").write_text('{"id": 1, "prompt": "p"}\n')
    with pytest.raises(SystemExit) as stop:
        run(AnnotateConfig(pairs=str(tmp_path / "bad.jsonl")))
    assert stop.value.code == 2 and "bad.jsonl:1: missing key 'response_0'" in capsys.readouterr().err
    busy = make_server(export_pairs(PAIRS, tmp_path / "other.jsonl"))  # another file: one server per labels file
    try:
        with pytest.raises(SystemExit):
            run(AnnotateConfig(pairs=str(pairs_path), port=busy.server_address[1]))
        assert f"port {busy.server_address[1]} is in use" in capsys.readouterr().err
    finally:
        busy.server_close()
