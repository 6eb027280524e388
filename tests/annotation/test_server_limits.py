"""The annotation server's limits: one server per labels file, body size and timeout, nesting, Origin."""

from __future__ import annotations

import json
import socket

import pytest

from saferlhf.annotation import labels_path_for, make_server
from saferlhf.annotation.files import AnnotationError
from saferlhf.annotation.server import REQUEST_TIMEOUT_S

from .test_server import COMPLETE, _post, _request, _start, _stop, pairs_path, server  # noqa: F401 (fixtures)


def _raw(server, head: bytes, body: bytes = b"", timeout: float = 20) -> bytes:
    """Send raw bytes (headers as given) and return the whole reply."""
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(head + b"\r\n\r\n" + body)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _label_request(length: str) -> bytes:
    return (f"POST /api/label HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nConnection: close").encode()


def test_a_second_server_on_the_same_labels_file_is_refused(server, pairs_path):
    with pytest.raises(AnnotationError, match="another annotation server is already saving labels to"):
        make_server(pairs_path)
    _stop(server)
    again = make_server(pairs_path)  # released when the first one closed
    again.server_close()


def test_two_servers_would_have_lost_labels(server, pairs_path):
    """What the lock prevents: the second server's memory saved over the first's answer."""
    assert _post(server, {"id": "p0", **COMPLETE})[0] == 200
    with pytest.raises(AnnotationError):
        make_server(pairs_path)
    assert json.loads(labels_path_for(pairs_path).read_text().splitlines()[0])["id"] == "p0"


def test_negative_content_length_is_refused(server):
    reply = _raw(server, _label_request("-1"), b"x" * 4096)
    assert reply.startswith(b"HTTP/1.0 400") and b"negative" in reply


def test_a_body_shorter_than_its_content_length_does_not_hold_the_handler(server):
    reply = _raw(server, _label_request("100"), b'{"id": "p0"', timeout=REQUEST_TIMEOUT_S + 10)  # then silence
    assert b"200" not in reply  # the server dropped the connection after its timeout; nothing was saved


def test_deeply_nested_json_is_a_400(server):
    body = b"[" * 100000 + b"]" * 100000
    code, reply = _post(server, body)
    assert code == 400 and "nested too deeply" in reply["error"]


@pytest.mark.parametrize("origin,expected", [("http://evil.example", 403), ("null", 403),
                                             ("http://127.0.0.1:1234", 200)])
def test_origin_must_be_a_loopback_page(server, origin, expected):
    code, reply = _post(server, {"id": "p1", **COMPLETE}, headers={"Origin": origin})
    assert code == expected, reply


def test_stale_temporary_files_of_the_labels_file_are_removed(pairs_path):
    stale = labels_path_for(pairs_path).with_name(labels_path_for(pairs_path).name + ".abc123.tmp")
    stale.write_text("half a file")
    running = _start(pairs_path)
    try:
        assert not stale.exists()
    finally:
        _stop(running)
