"""The wheel as an operator installs it: built from the sources, installed into a fresh virtual
environment outside the checkout, served by gunicorn from that install.

Dependencies are not downloaded again: the fresh environment gets the wheel only (`--no-deps`)
and a `.pth` line appending this environment's site-packages, so every import of `sharestore`,
`volumes` and `backups` (and their templates, static files, catalogues, migrations) comes from the
install, while Django and the other libraries are the ones the suite already uses. The test
checks that the installed package is what gets imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
IGNORED = shutil.ignore_patterns(
    ".venv",
    "var",
    "build",
    "*.egg-info",
    ".git",
    "__pycache__",
    ".pytest_cache",
    "test-artifacts",
    "tests",
    "bench",
)


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHARESTORE_", "DJANGO_", "PYTHON"))}
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, *, headers: dict | None = None, data: bytes | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv holding the freshly built wheel, and a working directory for its state."""
    root = tmp_path_factory.mktemp("package")
    source = root / "src"
    shutil.copytree(CHECKOUT, source, ignore=IGNORED)
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        env=_clean_env(),
    )
    wheel = next(dist.glob("sharestore-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "zz_sharestore_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    workdir = root / "run"
    workdir.mkdir()
    return {"venv": venv, "python": python, "workdir": workdir, "purelib": Path(purelib)}


def _manage(installed, *args) -> str:
    return subprocess.run(
        [str(installed["venv"] / "bin" / "sharestore"), *args],
        cwd=installed["workdir"],
        env=_clean_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_importing_settings_writes_nothing(installed, tmp_path):
    var = tmp_path / "state"
    code = (
        "import django.conf as c; import sharestore.settings as s; "
        "print(s.BASE_DIR, s.RESOURCE_DIR, s.SECRET_KEY == '')"
    )
    out = subprocess.run(
        [str(installed["python"]), "-c", code],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        env=_clean_env(SHARESTORE_VAR_DIR=str(var)),
    ).stdout.split()
    assert not var.exists()
    assert out[0] == str(tmp_path)
    assert out[1] == str(installed["venv"] / "share" / "sharestore")
    assert out[2] == "True"  # no key until an entry point creates the file


@pytest.mark.slow
def test_wheel_served_by_gunicorn(installed):
    workdir = installed["workdir"]
    origin = subprocess.run(
        [
            str(installed["python"]),
            "-c",
            "import sharestore, volumes, backups; print(sharestore.__file__, volumes.__file__)",
        ],
        cwd=workdir,
        env=_clean_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(path.startswith(str(installed["purelib"])) for path in origin), origin

    _manage(installed, "migrate", "--noinput", "-v", "0")
    _manage(installed, "createcachetable")
    _manage(installed, "collectstatic", "--noinput", "-v", "0")
    _manage(installed, "seed_demo")
    key = json.loads(_manage(installed, "create_token", "--name", "package-test", "--json"))["key"]
    # State lives in the working directory's var/, nothing under site-packages.
    assert (workdir / "var" / "secret_key").is_file()
    assert (workdir / "var" / "sharestore.sqlite3").is_file()
    assert (workdir / "var" / "static" / "core" / "console.css").is_file()
    assert not list(installed["purelib"].glob("**/*.sqlite3"))

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            str(installed["python"]),
            "-m",
            "gunicorn",
            "sharestore.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=workdir,
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not answer /healthz")

        status, _, body = _get(f"{base}/admin/login/")
        assert status == 200
        page = body.decode()
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
        assert "/static/core/console.css" in stylesheets
        for href in stylesheets:
            css_status, css_headers, _ = _get(base + href)
            assert css_status == 200, href
            assert css_headers["Content-Type"].startswith("text/css")

        status, _, body = _get(f"{base}/admin/login/", headers={"Accept-Language": "zh-hans"})
        assert status == 200
        page = body.decode()
        assert 'lang="zh-hans"' in page
        assert "语言" in page  # the project's own catalogue (the language switch)
        assert "用户名" in page  # Django's

        status, _, body = _get(f"{base}/")
        assert status == 200 and b"/api/docs/" in body

        request = {
            "tenant": "fab210d2-b9b8-4b0b-bd61-50812ce3d4d0",
            "cluster_uuid": "a97eb422-f42b-4b85-8556-725f152661f0",
            "page_size": 10,
        }
        status, headers, body = _get(
            f"{base}/v1/volume/share/list",
            headers={
                "Authorization": f"Token {key}",
                "Content-Type": "application/json",
                "X-Request-ID": "pkg-test-1",
            },
            data=json.dumps(request).encode(),
        )
        answer = json.loads(body)
        assert status == 200, answer
        assert answer["scode"] == 0 and isinstance(answer["data"]["TotalCount"], int)
        assert headers["X-Request-ID"] == "pkg-test-1"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=20)
