"""A live source whose first connection fails is retried with the reconnect backoff (issue 16 item 14): a real
HTTP stream from a local server that only starts after the first attempt was refused."""

from __future__ import annotations

import functools
import http.server
import socket
import threading

import pytest

from edgeseg.video import open_source
from edgeseg.video.errors import SourceError
from edgeseg.video.testing import FakeCamera, write_clip

pytest.importorskip("cv2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_stream_that_comes_up_late_is_connected_after_retries(tmp_path):
    write_clip(tmp_path / "live.avi", frames=10, fps=25)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/live.avi"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    servers = []

    def start_late():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    late = threading.Timer(0.4, start_late)  # after the first attempt (t=0) was refused
    late.start()
    source = open_source(url, retries=6, backoff=0.1, max_backoff=0.4)
    try:
        source.open()
        frames = []
        for image, _ in source:
            frames.append(image)
            if len(frames) == 3:
                break
    finally:
        source.close()
        late.join()
        for server in servers:
            server.shutdown()
            server.server_close()
    assert len(frames) == 3 and frames[0].shape == (64, 96, 3)
    assert any("cannot connect to the live source; reconnect attempt 1/6" in e for e in source.events)
    assert any("connected after" in e for e in source.events)


def test_stream_that_never_comes_up_fails_after_the_retries_naming_it():
    url = f"http://127.0.0.1:{_free_port()}/none.avi"
    source = open_source(url, retries=2, backoff=0.01)
    with pytest.raises(SourceError, match=f"cannot open stream '{url}'.*2 reconnect attempts over .* failed too"):
        source.open()
    assert sum("cannot connect to the live source; reconnect attempt" in e for e in source.events) == 2


def test_live_source_stops_waiting_when_interrupted():
    FakeCamera.opens = 0
    source = open_source(0, retries=5, backoff=5.0, capture_factory=lambda target, api: FakeCamera([None]))
    threading.Timer(0.2, source.interrupt).start()
    with pytest.raises(SourceError, match="stopped while waiting to connect"):
        source.open()
    assert FakeCamera.opens == 1
