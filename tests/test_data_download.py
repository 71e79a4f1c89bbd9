"""CIFAR-100 download against a real HTTP server on 127.0.0.1 (``http.server`` in a thread; urllib is
never mocked): redirects, resume with Range, retries, fallback, mirrors, Ctrl-C, final errors.

Each path of the server has a script: the answers to its first requests in order (``("status",
500)``, ``("redirect", 308, "/b")``, ``("drop", n)``: headers for the whole file but only n
bytes, ``("stall", n, s)``: n bytes then silence for s seconds, ``("ctrl_c", n)``: n bytes then a
simulated Ctrl-C in the client, ``("bad_range", start)``: a 206 from the wrong byte), then the
file itself, with or without Range support. Every request is logged with its Range header.
"""
from __future__ import annotations

import _thread
import http.server
import re
import signal
import threading
import time

import numpy as np
import pytest
from cifar_archive import FOLDER, build_archive

from tinyba2m.data import cifar100, load_dataset
from tinyba2m.data.cifar100 import DatasetError, load_cifar100
from tinyba2m.data.download import RetryPolicy

ARCHIVE = "cifar-100-python.tar.gz"


class Route:
    def __init__(self, blob: bytes = b"", ranges: bool = True, script=(), status: int | None = None):
        self.blob, self.ranges, self.script, self.status = blob, ranges, list(script), status


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        route = self.server.routes.get(self.path)
        rng = self.headers.get("Range")
        action = ("status", 404) if route is None else route.script.pop(0) if route.script else ("serve",)
        self.server.requests.append((self.path, rng, action[0]))
        self.close_connection = True
        getattr(self, "_" + action[0])(route, rng, *action[1:])

    def _head(self, code, length, **headers):
        self.send_response(code)
        self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()

    def _status(self, route, rng, code):
        body = f"error {code}\n".encode()
        self._head(code, len(body), Content_Type="text/plain")
        self.wfile.write(body)

    def _redirect(self, route, rng, code, location):
        self._head(code, 0, Location=location)

    def _serve(self, route, rng, cut=None, after=None):
        """The file (from the Range start when supported); only ``cut`` bytes of it, then ``after()``."""
        blob, start = route.blob, 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and route.ranges:
            start = int(m.group(1))
            if start >= len(blob):
                return self._head(416, 0, Content_Range=f"bytes */{len(blob)}")
            self._head(206, len(blob) - start, Content_Range=f"bytes {start}-{len(blob) - 1}/{len(blob)}")
        else:
            self._head(200, len(blob))
        body = blob[start:]
        self.wfile.write(body if cut is None else body[:cut])
        if after is not None:
            after(body[cut:])

    def _drop(self, route, rng, n):
        self._serve(route, rng, cut=n)  # the server closes the connection after n bytes

    def _stall(self, route, rng, n, seconds):
        self._serve(route, rng, cut=n, after=lambda rest: self.server.stop.wait(seconds))

    def _ctrl_c(self, route, rng, n):
        def interrupt(rest):
            time.sleep(0.3)                      # let the client write what it has
            _thread.interrupt_main()             # what Ctrl-C does: KeyboardInterrupt in the main thread
            try:
                self.wfile.write(rest)           # the client raises as soon as it returns from recv
            except OSError:
                pass
        self._serve(route, rng, cut=n, after=interrupt)

    def _bad_range(self, route, rng, start):
        blob = route.blob
        self._head(206, len(blob) - start, Content_Range=f"bytes {start}-{len(blob) - 1}/{len(blob)}")
        self.wfile.write(blob[start:])


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up on a dropped or interrupted answer is part of the test

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                cifar100.URL_ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.routes, srv.requests, srv.stop = {}, [], threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def fast_policy(monkeypatch):
    policy = RetryPolicy(attempts=3, backoff_s=0.0, timeout_s=10.0, max_redirects=5, chunk=4096)
    monkeypatch.setattr(cifar100, "DOWNLOAD_POLICY", policy)
    return policy


@pytest.fixture
def arch(tmp_path):
    return build_archive(tmp_path / "src" / ARCHIVE, n_train=24, n_test=12, seed=5)


def fetch(server, arch, data_dir, *paths, **kw):
    """load_cifar100 into ``data_dir`` from the server paths given, in order."""
    src = arch.source(url=tuple(server.url(p) for p in paths), size=kw.pop("source_size", "actual"))
    return load_cifar100(data_dir, download=True, progress=kw.pop("progress", False), source=src, **kw)


def check_loaded(d, arch, data_dir):
    assert (data_dir / ARCHIVE).read_bytes() == arch.path.read_bytes()
    assert not (data_dir / (ARCHIVE + ".part")).exists()
    np.testing.assert_array_equal(d.train_images.reshape(24, -1), arch.splits["train"]["data"])
    np.testing.assert_array_equal(d.test_labels, arch.splits["test"]["fine"])


def test_plain_download(server, arch, tmp_path, capsys):
    server.routes["/c.tgz"] = Route(arch.path.read_bytes())
    d = fetch(server, arch, tmp_path / "d", "/c.tgz")
    check_loaded(d, arch, tmp_path / "d")
    assert server.requests == [("/c.tgz", None, "serve")]
    err = capsys.readouterr().err
    assert "downloading CIFAR-100" in err and server.url("/c.tgz") in err and "retrying" not in err


@pytest.mark.parametrize("codes", [(301,), (308,), (301, 308), (308, 302, 307, 303)])
def test_redirect_chains_are_followed(server, arch, tmp_path, codes, capsys):
    """Every redirect code on every Python (urllib follows 308 only from 3.11); relative and absolute."""
    paths = [f"/hop{i}" for i in range(len(codes))] + ["/final.tgz"]
    for i, code in enumerate(codes):
        target = paths[i + 1] if i % 2 else server.url(paths[i + 1])
        server.routes[paths[i]] = Route(script=[("redirect", code, target)])
    server.routes["/final.tgz"] = Route(arch.path.read_bytes())
    check_loaded(fetch(server, arch, tmp_path / "d", paths[0]), arch, tmp_path / "d")
    assert [r[0] for r in server.requests] == paths
    assert f"redirects to {server.url('/final.tgz')}" in capsys.readouterr().err


def test_redirect_loop_is_bounded_and_the_next_address_is_tried(server, arch, tmp_path, fast_policy):
    server.routes["/loop"] = Route(script=[("redirect", 308, "/loop")] * 100)
    server.routes["/ok.tgz"] = Route(arch.path.read_bytes())
    check_loaded(fetch(server, arch, tmp_path / "d", "/loop", "/ok.tgz"), arch, tmp_path / "d")
    assert [r[0] for r in server.requests].count("/loop") == fast_policy.max_redirects + 1


def test_dropped_connection_resumes_with_range_and_md5_passes(server, arch, tmp_path, capsys):
    blob = arch.path.read_bytes()
    half = len(blob) // 2
    server.routes["/c.tgz"] = Route(blob, script=[("drop", half)])
    check_loaded(fetch(server, arch, tmp_path / "d", "/c.tgz"), arch, tmp_path / "d")
    assert server.requests == [("/c.tgz", None, "drop"), ("/c.tgz", f"bytes={half}-", "serve")]
    err = capsys.readouterr().err
    assert f"connection closed after {half:,} of {len(blob):,} bytes" in err
    assert f"resuming: {half:,} of {len(blob):,} bytes already in" in err
    assert len([line for line in err.splitlines() if "retrying" in line]) == 1


def test_stalled_server_times_out_and_resumes(server, arch, tmp_path, monkeypatch, fast_policy, capsys):
    monkeypatch.setattr(cifar100, "DOWNLOAD_POLICY", RetryPolicy(**{**fast_policy.__dict__, "timeout_s": 0.5}))
    blob = arch.path.read_bytes()
    server.routes["/c.tgz"] = Route(blob, script=[("stall", 10_000, 5.0)])
    check_loaded(fetch(server, arch, tmp_path / "d", "/c.tgz"), arch, tmp_path / "d")
    assert server.requests[-1][1] is not None and server.requests[-1][1].startswith("bytes=")
    assert "timed out" in capsys.readouterr().err


def test_server_without_range_support_restarts_from_zero(server, arch, tmp_path, capsys):
    blob = arch.path.read_bytes()
    half = len(blob) // 2
    server.routes["/c.tgz"] = Route(blob, ranges=False, script=[("drop", half)])
    check_loaded(fetch(server, arch, tmp_path / "d", "/c.tgz"), arch, tmp_path / "d")
    assert server.requests == [("/c.tgz", None, "drop"), ("/c.tgz", f"bytes={half}-", "serve")]
    assert f"does not resume downloads (HTTP 200 to a Range request): starting again from byte 0 ({half:,} " \
           in capsys.readouterr().err


def test_206_from_the_wrong_byte_is_not_spliced(server, arch, tmp_path, capsys):
    blob = arch.path.read_bytes()
    half = len(blob) // 2
    server.routes["/c.tgz"] = Route(blob, script=[("drop", half), ("bad_range", 100)])
    check_loaded(fetch(server, arch, tmp_path / "d", "/c.tgz"), arch, tmp_path / "d")
    assert [r[1] for r in server.requests] == [None, f"bytes={half}-", None]
    assert f"Content-Range 'bytes 100-{len(blob) - 1}/{len(blob)}'" in capsys.readouterr().err


def test_500_then_success_is_retried_with_one_line(server, arch, tmp_path, capsys, monkeypatch, fast_policy):
    monkeypatch.setattr(cifar100, "DOWNLOAD_POLICY", RetryPolicy(**{**fast_policy.__dict__, "backoff_s": 0.01}))
    waits = []
    monkeypatch.setattr(time, "sleep", waits.append)  # the server thread of this test never sleeps
    server.routes["/c.tgz"] = Route(arch.path.read_bytes(), script=[("status", 500), ("status", 503)])
    check_loaded(fetch(server, arch, tmp_path / "d", "/c.tgz"), arch, tmp_path / "d")
    assert [r[2] for r in server.requests] == ["status", "status", "serve"]
    retries = [line for line in capsys.readouterr().err.splitlines() if "retrying" in line]
    assert len(retries) == 2 and "HTTP 500" in retries[0] and "HTTP 503" in retries[1]
    assert all(line.startswith("[cifar100] ") for line in retries)
    assert waits == [0.01, 0.02] and "retrying in 0.01s" in retries[0] and "retrying in 0.02s" in retries[1]


def test_backoff_doubles_up_to_the_cap():
    p = RetryPolicy(backoff_s=2.0, max_backoff_s=10.0)
    assert [p.delay(k) for k in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_404_moves_on_to_the_fallback_address_without_retrying(server, arch, tmp_path, capsys):
    """The official order: new host first, old address (here redirecting, as the real one does) second."""
    server.routes["/old/c.tgz"] = Route(script=[("redirect", 301, "/new/c.tgz")])
    server.routes["/new/c.tgz"] = Route(arch.path.read_bytes())
    check_loaded(fetch(server, arch, tmp_path / "d", "/gone/c.tgz", "/old/c.tgz"), arch, tmp_path / "d")
    assert [r[0] for r in server.requests] == ["/gone/c.tgz", "/old/c.tgz", "/new/c.tgz"]
    assert f"HTTP 404 Not Found; trying the next address, {server.url('/old/c.tgz')}" in capsys.readouterr().err


def test_final_error_names_every_address_the_bytes_and_the_manual_way(server, arch, tmp_path, fast_policy):
    blob = arch.path.read_bytes()
    server.routes["/a.tgz"] = Route(blob, ranges=False, script=[("drop", 5000)] * 10)
    refused = "http://127.0.0.1:9/c.tgz"  # the discard port: connection refused at once
    src = arch.source(url=(server.url("/a.tgz"), server.url("/b.tgz"), refused))
    data_dir = tmp_path / "d"
    with pytest.raises(DatasetError) as e:
        load_cifar100(data_dir, download=True, progress=False, source=src)
    msg = str(e.value)
    assert f"(1) {server.url('/a.tgz')}: connection closed after 5,000 of {len(blob):,} bytes " \
           f"({fast_policy.attempts} tries in a row without progress)" in msg
    assert f"(2) {server.url('/b.tgz')}: HTTP 404" in msg and f"(3) {refused}: " in msg
    part = data_dir / (ARCHIVE + ".part")
    assert f"5,000 of {len(blob):,} bytes obtained, kept in {part}" in msg
    assert str(data_dir / ARCHIVE) in msg and arch.md5 in msg and "by hand" in msg and "curl -L -C -" in msg
    assert part.stat().st_size == 5000 and part.read_bytes() == blob[:5000]
    # the first try made progress (0 -> 5,000 bytes); then `attempts` tries without; then /b once
    assert [r[0] for r in server.requests] == ["/a.tgz"] * (fast_policy.attempts + 1) + ["/b.tgz"]


@pytest.mark.parametrize("wrong", ["one byte changed", "another archive"])
def test_mirror_serving_a_wrong_file_is_refused_and_kept(server, arch, tmp_path, monkeypatch, wrong):
    if wrong == "one byte changed":
        served = bytearray(arch.path.read_bytes())
        served[len(served) // 3] ^= 0x40
        served, why = bytes(served), "failed the md5 check"
    else:
        served = build_archive(tmp_path / "other" / ARCHIVE, n_train=24, n_test=12, seed=99).path.read_bytes()
        assert len(served) != arch.size
        why = f"is (smaller|larger) than expected: {len(served)} bytes, expected {arch.size} bytes"
    server.routes["/mirror/c.tgz"] = Route(served)
    server.routes["/official.tgz"] = Route(arch.path.read_bytes())
    monkeypatch.setenv(cifar100.URL_ENV_VAR, server.url("/mirror/c.tgz"))
    data_dir = tmp_path / "d"
    with pytest.raises(DatasetError, match=why) as e:
        fetch(server, arch, data_dir, "/official.tgz")
    assert f"downloaded just now from {server.url('/mirror/c.tgz')}, which therefore does not serve the official " \
           f"archive" in str(e.value) and "left in place" in str(e.value)
    assert (data_dir / ARCHIVE).read_bytes() == served, "kept for inspection"
    assert not (data_dir / FOLDER).exists()
    assert [r[0] for r in server.requests] == ["/mirror/c.tgz"], "a mirror replaces the official addresses"


def test_url_argument_beats_the_environment_and_load_dataset_passes_it(server, arch, tmp_path, monkeypatch):
    server.routes["/arg.tgz"] = Route(arch.path.read_bytes())
    monkeypatch.setenv(cifar100.URL_ENV_VAR, server.url("/env.tgz"))
    monkeypatch.setattr(cifar100, "SOURCE", arch.source(url=server.url("/official.tgz")))
    d = load_dataset("cifar100", data_dir=tmp_path / "d", subset=5, progress=False, url=server.url("/arg.tgz"))
    assert d.train_images.shape == (5, 3, 32, 32)
    assert [r[0] for r in server.requests] == ["/arg.tgz"]


def test_a_url_that_is_not_an_address_is_refused_when_a_download_is_needed(arch, tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="not an http://, https:// or file:// address"):
        load_cifar100(tmp_path / "d", progress=False, source=arch.source(), url="/home/me/cifar.tgz")
    monkeypatch.setenv(cifar100.URL_ENV_VAR, "C:\\data\\cifar.tgz")
    with pytest.raises(DatasetError, match=f"\\${cifar100.URL_ENV_VAR} 'C:"):
        load_cifar100(tmp_path / "d", progress=False, source=arch.source())
    d = load_cifar100(arch.path.parent, progress=False, source=arch.source())  # the archive is there: no address needed
    assert d.train_images.shape == (24, 3, 32, 32)


@pytest.fixture
def default_sigint():
    """Ctrl-C raises KeyboardInterrupt for the test, even when pytest started from a shell that ignores
    SIGINT (a background or nohup job), where ``_thread.interrupt_main`` would do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_keeps_the_part_and_the_next_run_resumes(server, arch, tmp_path, capsys, default_sigint):
    blob = arch.path.read_bytes()
    half = len(blob) // 2
    server.routes["/c.tgz"] = Route(blob, script=[("ctrl_c", half)])
    data_dir = tmp_path / "d"
    part = data_dir / (ARCHIVE + ".part")
    with pytest.raises(KeyboardInterrupt):
        fetch(server, arch, data_dir, "/c.tgz")
    kept = part.stat().st_size
    assert 0 < kept < len(blob) and part.read_bytes() == blob[:kept]
    assert not (data_dir / ARCHIVE).exists()
    assert f"interrupted: {kept:,} bytes kept in {part}" in capsys.readouterr().err
    check_loaded(fetch(server, arch, data_dir, "/c.tgz"), arch, data_dir)
    assert server.requests[-1] == ("/c.tgz", f"bytes={kept}-", "serve")
    assert f"resuming: {kept:,} of {len(blob):,} bytes already in" in capsys.readouterr().err


def test_complete_part_is_renamed_without_a_download(server, arch, tmp_path):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / (ARCHIVE + ".part")).write_bytes(arch.path.read_bytes())
    check_loaded(fetch(server, arch, data_dir, "/c.tgz"), arch, data_dir)
    assert server.requests == []


@pytest.mark.parametrize("extra", [0, 100])
def test_416_completes_a_full_part_and_discards_a_too_long_one(server, arch, tmp_path, extra, capsys):
    """Size unknown to the client: the server's 416 (``bytes */size``) says whether the part is whole."""
    blob = arch.path.read_bytes()
    server.routes["/c.tgz"] = Route(blob)
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / (ARCHIVE + ".part")).write_bytes(blob + b"\0" * extra)
    check_loaded(fetch(server, arch, data_dir, "/c.tgz", source_size=None), arch, data_dir)
    if extra:
        assert [r[1] for r in server.requests] == [f"bytes={len(blob) + extra}-", None]
        assert "HTTP 416" in capsys.readouterr().err
    else:
        assert [r[1] for r in server.requests] == [f"bytes={len(blob)}-"]


def test_part_without_download_is_pointed_out(arch, tmp_path):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / (ARCHIVE + ".part")).write_bytes(b"x" * 1234)
    with pytest.raises(DatasetError, match=r"partial download .*\(1,234 bytes\) is there"):
        load_cifar100(data_dir, download=False, progress=False, source=arch.source())


def test_progress_bar_shows_rate_and_time_left_and_the_slow_server_warning(server, arch, tmp_path, monkeypatch,
                                                                            capsys):
    monkeypatch.setattr(cifar100, "URLS", (server.url("/new.tgz"), server.url("/old.tgz")))
    server.routes["/new.tgz"] = Route(arch.path.read_bytes())
    fetch(server, arch, tmp_path / "d", "/new.tgz", "/old.tgz", progress=True)
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("[cifar100] downloading CIFAR-100") and "slow" in first and "up to an hour" in first
    assert "resumes where it stopped" in first and cifar100.URL_ENV_VAR in first
    assert re.search(r"CIFAR-100: 100%\|.*\| [\d.]+k/[\d.]+k \[[\d:]+ elapsed, [\d:]+ left, [\d.]+[kMG]?B/s\]", err)


# --- a data folder that already holds the data (torchvision's layout) ---------------------------

def torchvision_root(arch, root, archive: bool, extracted: bool):
    """What ``torchvision.datasets.CIFAR100(root, download=True)`` leaves: the archive and/or
    ``cifar-100-python/{train,test,meta,file.txt~}``, without our stamp file."""
    root.mkdir(parents=True)
    if archive:
        (root / ARCHIVE).write_bytes(arch.path.read_bytes())
    if extracted:
        for name, data in arch.member_bytes.items():
            (root / name).parent.mkdir(exist_ok=True)
            (root / name).write_bytes(data)
        (root / FOLDER / "file.txt~").write_bytes(b"fake\n")
    return root


@pytest.mark.parametrize("archive,extracted,inner", [(False, True, False), (True, False, False), (True, True, False),
                                                     (False, True, True)])
def test_torchvision_layout_is_used_without_a_download(server, arch, tmp_path, archive, extracted, inner):
    root = torchvision_root(arch, tmp_path / "tv", archive, extracted)
    data_dir = root / FOLDER if inner else root
    d = load_cifar100(data_dir, download=True, progress=False, source=arch.source(url=server.url("/c.tgz")))
    np.testing.assert_array_equal(d.train_images.reshape(24, -1), arch.splits["train"]["data"])
    assert server.requests == [], "nothing may be downloaded"
    assert not (root / FOLDER / FOLDER).exists(), "the inner folder is used as it is, not nested again"
