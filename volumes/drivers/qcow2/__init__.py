"""The directory driver: a pool is a directory of qcow2 files.

`driver.py` (images), `tree.py` with the pure planner `plan.py` (snapshot trees), `clones.py`.
"""

from volumes.drivers.qcow2.driver import Qcow2DirectoryDriver

__all__ = ["Qcow2DirectoryDriver"]
