"""Fixtures of the driver suites: a throw-away single-node Ceph for the RBD driver (tests/drivers/ceph.py)."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.drivers import ceph


@pytest.fixture(scope="session")
def ceph_cluster(tmp_path_factory):
    """One monitor and one memstore OSD for the whole session, torn down at its end; the tests that
    need it are skipped with the reason when it cannot start; in CI (`CI` set: root, ceph installed by
    `make test`) a cluster that cannot start is a failure, not a skip."""
    try:
        cluster = ceph.start(tmp_path_factory.mktemp("ceph"))
    except ceph.CephUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must start the test Ceph cluster: {exc}")
        pytest.skip(f"no test Ceph cluster: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def rbd_namespace(ceph_cluster):
    """Makes fresh RBD pool locations (one namespace each) on the session's cluster."""

    def make(name: str = "pool") -> str:
        return ceph_cluster.namespace(f"{name}-{uuid.uuid4().hex[:8]}")

    return make
