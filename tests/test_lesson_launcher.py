"""``python -m lessons`` opens a lesson as a running notebook: checked through the server's REST API, no browser.

One JupyterLab server for the module, started as lessons/README.md says (``python -m lessons``, plus
``--no-browser``, a free local port and a token) with a temporary Jupyter config, data and runtime
folder, so that neither the user's settings nor a leftover session can make it pass. It asserts that
Markdown opens with jupytext's notebook viewer, that every lesson names an installed kernel (this
Python) and that the kernel starts, and that saving a lesson writes no metadata into its ``.md``.
Skips cleanly without the ``lessons`` extra (``pip install -e ".[lessons]"``); about 20 s on 2 busy cores,
most of it the server start.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from lessons import __main__ as launcher
from test_lessons import LESSON_FILES

ROOT = Path(__file__).resolve().parents[1]
NEEDS = 'needs the lessons extra: pip install -e ".[lessons]"'
LESSON = "lessons/02_gradient_checking.md"


def test_missing_extra_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(launcher, "REQUIRED", ("jupytext", "no_such_module_for_tinyba2m"))
    assert launcher.main(["--no-browser"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    # (jupytext itself is named too where the lessons extra is not installed)
    assert re.search(r"missing [\w, ]*no_such_module_for_tinyba2m", err) and 'pip install -e ".[lessons]"' in err


class Lab:
    """A running ``python -m lessons`` server and a small JSON client for it."""

    def __init__(self, tmp: Path):
        self.port = _free_port()
        self.token = uuid.uuid4().hex
        self.log = tmp / "server.log"
        self.runtime = tmp / "runtime"   # the kernels' connection files
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.runtime), IPYTHONDIR=str(tmp / "ipython"))
        cmd = [sys.executable, "-m", "lessons", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}"]
        if getattr(os, "geteuid", lambda: 1)() == 0:        # containers and CI often run as root
            cmd.append("--allow-root")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read().decode()
        return json.loads(text) if text and resp.headers.get_content_type() == "application/json" else text

    def get(self, path: str):
        return self.request("GET", path)

    def wait_ready(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"python -m lessons exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.get("/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        pytest.fail(f"python -m lessons did not answer in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    for name in launcher.REQUIRED:
        pytest.importorskip(name, reason=NEEDS)
    server = Lab(tmp_path_factory.mktemp("jupyter"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
    session_dir = re.search(r"settings in (\S+), removed on exit", server.log.read_text())
    assert session_dir, "the launcher did not say where its session settings are"
    assert not Path(session_dir.group(1)).exists(), "the session settings outlived the server"


def test_markdown_opens_with_the_jupytext_notebook_viewer(lab):
    plugin = lab.get("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    assert plugin["schema"]["properties"]["defaultViewers"]["default"] == {"markdown": "Jupytext Notebook"}
    assert plugin["settings"].get("defaultViewers", {}).get("markdown", "Jupytext Notebook") == "Jupytext Notebook"
    # ... and that viewer exists: the lab page loads jupytext's extension, which registers that factory name
    page = lab.get("/lab")
    config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                  page, re.S).group(1))
    names = [ext["name"] for ext in config["federated_extensions"]]
    assert "jupyterlab-jupytext" in names, names
    from jupyter_core.paths import jupyter_path
    static = [p for d in jupyter_path("labextensions", "jupyterlab-jupytext") for p in Path(d).glob("static/*.js")]
    assert any('"Jupytext Notebook"' in p.read_text(errors="replace") for p in static), "no such viewer"


def test_every_lesson_opens_with_this_pythons_kernel(lab):
    specs = lab.get("/api/kernelspecs")["kernelspecs"]
    for path in LESSON_FILES:
        model = lab.get(f"/api/contents/lessons/{path.name}?type=notebook&content=1")
        name = model["content"]["metadata"].get("kernelspec", {}).get("name")
        assert name in specs, f"{path.name} opens with kernel {name!r}, installed: {sorted(specs)}"
        argv0 = specs[name]["spec"]["argv"][0]
        assert os.path.isfile(argv0) and os.path.samefile(argv0, sys.executable), argv0


def test_the_lessons_kernel_starts_and_runs_this_python(lab):
    """Start the lesson's kernel as JupyterLab does (a session) and run one cell in it."""
    from jupyter_client import BlockingKernelClient

    name = lab.get(f"/api/contents/{LESSON}?type=notebook&content=1")["content"]["metadata"]["kernelspec"]["name"]
    session = lab.request("POST", "/api/sessions", {"path": LESSON, "type": "notebook", "name": "",
                                                    "kernel": {"name": name}})
    client = BlockingKernelClient(connection_file=str(lab.runtime / f"kernel-{session['kernel']['id']}.json"))
    try:
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=120)
        out = []
        reply = client.execute_interactive("import os, sys; print(sys.executable); print(os.getcwd())", timeout=60,
                                           output_hook=lambda msg: out.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
        executable, cwd = "".join(out).split()
        assert os.path.samefile(executable, sys.executable), executable
        assert os.path.samefile(cwd, ROOT / "lessons"), cwd   # the lesson's first cell expects to start in lessons/
    finally:
        client.stop_channels()
        lab.request("DELETE", f"/api/sessions/{session['id']}")


def test_saving_a_lesson_writes_no_metadata_into_the_markdown(lab):
    model = lab.get(f"/api/contents/{LESSON}?type=notebook&content=1")
    assert "kernelspec" in model["content"]["metadata"]
    stem = f"lessons/_saved_by_test_{uuid.uuid4().hex[:8]}"
    try:
        lab.request("PUT", f"/api/contents/{stem}.md", {"type": "notebook", "format": "json",
                                                        "content": model["content"]})
        assert (ROOT / f"{stem}.md").read_text() == (ROOT / LESSON).read_text()
        paired = json.loads((ROOT / f"{stem}.ipynb").read_text())   # the machine's notebook keeps the kernel
        assert paired["metadata"]["kernelspec"]["name"] == model["content"]["metadata"]["kernelspec"]["name"]
    finally:
        for ext in (".md", ".ipynb"):
            (ROOT / f"{stem}{ext}").unlink(missing_ok=True)
