"""A hypothesis state machine over writes, snapshot create, rollback (with or without a snapshot
first) and delete on one volume, on real images. After every step: the database tree equals the
on-disk backing chains (`qemu-img info --backing-chain`), every snapshot and the head read back
exactly what was written before them, no file is orphaned and nothing is left half-way.

CI runs 40 examples of up to 20 steps (about 100 s here); a nightly run raises them through the environment:
  SHARESTORE_HYPOTHESIS_EXAMPLES=2000 SHARESTORE_HYPOTHESIS_STEPS=50 pytest tests/services/...
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from sharestore import errors
from tests.services.snapshot_support import REGIONS
from tests.services.test_snapshots import Model
from volumes.services.volumes import pool_driver

EXAMPLES = int(os.environ.get("SHARESTORE_HYPOTHESIS_EXAMPLES", "40"))
STEPS = int(os.environ.get("SHARESTORE_HYPOTHESIS_STEPS", "20"))
NAMES = ["a", "b", "c", "d", "e"]


@pytest.mark.slow
def test_snapshot_tree_state_machine(topology, settings):
    # Deep enough for any run of STEPS creates: the limit is tested on its own elsewhere.
    settings.SHARESTORE_SNAPSHOT_MAX_DEPTH = max(32, 2 * STEPS + 2)
    volumes = itertools.count()

    class SnapshotTree(RuleBasedStateMachine):
        """One fresh volume per example; the model (`Model`) says what every image must read."""

        snapshots = Bundle("snapshots")

        def __init__(self):
            super().__init__()
            self.m = Model(topology, f"machine-{next(volumes)}")
            self.bytes = itertools.count()
            self.firsts = itertools.count()

        @rule(region=st.integers(0, REGIONS - 1))
        def write(self, region):
            self.m.write(**{f"r{region}": next(self.bytes) % 255 + 1})

        @rule(target=snapshots, name=st.sampled_from(NAMES))
        def create(self, name):
            if name in self.m.snaps:
                with pytest.raises(errors.SnapshotNameExists):
                    self.m.create(name)
                return multiple()
            self.m.create(name)
            return name

        @rule(target=snapshots, name=snapshots, first=st.booleans())
        def rollback(self, name, first):
            first_name = f"first-{next(self.firsts)}" if first else None
            self.m.rollback(name, first=first_name)
            return multiple(first_name) if first_name else multiple()

        @rule(name=consumes(snapshots))
        def delete(self, name):
            self.m.delete(name)

        @invariant()
        def tree_data_and_files_agree(self):
            self.m.check()

        def teardown(self):
            driver = pool_driver(self.m.volume.pool)
            for name in driver._all_files():
                if str(self.m.volume.uuid) in name:
                    os.unlink(driver.path(name))

    run_state_machine_as_test(
        SnapshotTree,
        settings=hypothesis_settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
