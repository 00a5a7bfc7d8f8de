"""gunicorn, started as `make run` and the API unit start it, logs JSON lines like the application."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_gunicorn_error_and_access_lines_are_json_with_the_request_id(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "SHARESTORE_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "sharestore.settings",
    }
    env.pop("DATABASE_URL", None)  # /healthz needs no database
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "sharestore.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "-c",
            "python:sharestore.gunicorn_conf",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    answered_id = response.headers["X-Request-ID"]
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("gunicorn did not answer")
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert {"gunicorn.error", "gunicorn.access"} <= {line["logger"] for line in lines}
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert "GET /healthz" in access[0]["message"] and f"request_id={answered_id}" in access[0]["message"]
