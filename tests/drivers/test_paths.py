"""Path rules shared by the pool drivers and the backup store (`volumes.drivers.paths`)."""

import os

import pytest

from sharestore import errors
from volumes.drivers.paths import path_inside, writable_directory


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\x00b"])
def test_path_inside_refuses_names_that_leave_the_root(name):
    with pytest.raises(errors.StorageError, match="invalid image name"):
        path_inside("/pool", name, what="image")


def test_path_inside_maps_a_relative_name_below_the_root():
    assert path_inside("/pool", "snapshots/v/s.qcow2", what="image") == "/pool/snapshots/v/s.qcow2"


def test_writable_directory_resolves_an_existing_one_and_refuses_others(tmp_path):
    assert writable_directory(str(tmp_path)) == os.path.realpath(tmp_path)
    for bad in ("relative/dir", str(tmp_path / "missing")):
        with pytest.raises(errors.InvalidParameter):
            writable_directory(bad)
