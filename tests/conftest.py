"""Fixtures: every test gets its own data dir with real pool directories and an import root under
tmp_path, real qemu-img, django-q2 in sync mode (tasks run when the request's transaction commits)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from sharestore.core.services.tokens import token_create

# Settings read the secret key from SHARESTORE_SECRET_KEY or var/secret_key and never create it
# (manage.py does); a checkout that never ran manage.py still gets a key for its tests. The real
# qcluster workers some tests start inherit it through the environment: django-q2 signs task
# payloads with the key, and a worker with another key (manage.py would create one) drops them all.
if not getattr(settings._wrapped, "SECRET_KEY", None):
    os.environ["SHARESTORE_SECRET_KEY"] = "sharestore-tests-only-" + "x" * 40
    settings.SECRET_KEY = os.environ["SHARESTORE_SECRET_KEY"]
from volumes.services import demo

TENANT = demo.TENANT_UUID
CLUSTER = demo.CLUSTER_UUID
POOL_DISKS = "0eca2be3-056f-4634-a25b-5cf717e067fb"
POOL_BBB = "f0dc0363-5e70-419a-95ad-2c49c14d70c1"
HOST = demo.HOST_UUID


# Encrypted backups' key derivation at 20 ms instead of qemu's 2 s: every open of an encrypted file
# pays it, and the suite opens hundreds (real workers it starts inherit the variable).
os.environ.setdefault("SHARESTORE_BACKUP_ENCRYPT_ITER_TIME_MS", "20")


@pytest.fixture(autouse=True)
def data_dir(tmp_path, settings):
    """Storage of this test only: pools, backup points and import root under tmp_path."""
    root = tmp_path / "data"
    (root / "import").mkdir(parents=True)
    settings.SHARESTORE_DATA_DIR = root
    settings.SHARESTORE_IMPORT_ROOTS = [str(root / "import")]
    settings.SHARESTORE_BACKUP_ENCRYPT_ITER_TIME_MS = int(
        os.environ["SHARESTORE_BACKUP_ENCRYPT_ITER_TIME_MS"]
    )
    return root


@pytest.fixture(autouse=True)
def read_caches():
    """Every test starts with empty per-process read caches (tokens, scopes, pools: docs/api.md)."""
    from sharestore.core.services import readcache

    readcache.clear_all()
    yield
    readcache.clear_all()


@pytest.fixture(autouse=True)
def q_sync(monkeypatch):
    """django-q2 runs a task inline when it is enqueued (after commit)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def topology(db, data_dir):
    """The demo topology (the contract's UUIDs) with pools in this test's data dir."""
    return demo.demo_topology_seed(data_dir=data_dir)


@pytest.fixture
def import_root(data_dir) -> Path:
    return data_dir / "import"


@pytest.fixture
def platform_token(db):
    token, key = token_create(name="test-platform")
    return key


class Api:
    """Calls the API as a client would and runs the tasks its transactions enqueue."""

    def __init__(self, client: APIClient, capture):
        self.client = client
        self.capture = capture

    def post(self, path: str, body=None, *, raw: str | None = None, content_type="application/json"):
        url = path if path.startswith("/") else f"/v1/volume/share/{path}"
        with self.capture(execute=True):
            if raw is not None:
                response = self.client.generic("POST", url, raw, content_type=content_type)
            else:
                response = self.client.generic("POST", url, json.dumps(body), content_type=content_type)
        return response.status_code, json.loads(response.content)

    def get(self, path: str, params=None):
        url = path if path.startswith("/") else f"/v1/volume/share/{path}"
        with self.capture(execute=True):
            response = self.client.get(url, params or {})
        return response.status_code, json.loads(response.content)


@pytest.fixture
def api(topology, platform_token, django_capture_on_commit_callbacks) -> Api:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {platform_token}")
    return Api(client, django_capture_on_commit_callbacks)


@pytest.fixture
def anonymous_api(topology, django_capture_on_commit_callbacks) -> Api:
    return Api(APIClient(), django_capture_on_commit_callbacks)


def scoped(**fields) -> dict:
    """A request body with the demo tenant and cluster plus `fields`."""
    return {"tenant": TENANT, "cluster_uuid": CLUSTER, **fields}


def qemu_img(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Test-side qemu-img calls, to check what the service wrote."""
    return subprocess.run([settings.SHARESTORE_QEMU_IMG, *args], capture_output=True, text=True, check=check)


def qemu_io(image: str | Path, fmt: str, *commands: str) -> subprocess.CompletedProcess:
    argv = ["qemu-io", "-f", fmt]
    for command in commands:
        argv += ["-c", command]
    argv.append(str(image))
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert "error" not in result.stdout.lower() and "failed" not in result.stdout.lower(), result.stdout
    return result


def pattern_matches(image: str | Path, fmt: str, offset: int, length: int, byte: int) -> bool:
    """Whether the guest-visible bytes at [offset, offset+length) all equal `byte` (qemu-io read -P)."""
    result = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", fmt, "-c", f"read -P {byte} {offset} {length}", str(image)],
        capture_output=True,
        text=True,
    )
    return result.returncode == 0 and "Pattern verification failed" not in result.stdout


def image_info(path: str | Path) -> dict:
    return json.loads(qemu_img("info", "-U", "--output=json", str(path)).stdout)


def pytest_collection_modifyitems(config, items):
    """The long storage-host trials (marker `hosts`) run only when `-m` names them."""
    if "hosts" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long storage-host trial: run with -m hosts (docs/deploy.md)")
    for item in items:
        if "hosts" in item.keywords and item.get_closest_marker("hosts"):
            item.add_marker(skip)
