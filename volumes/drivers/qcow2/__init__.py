"""The directory driver: a pool is a directory of qcow2 files.

`driver.py` (images, usage), `tree.py` with the pure planner `plan.py` (snapshot trees), `clones.py`,
`export.py` (pool space, inventory, exports and restore).
"""

from volumes.drivers.qcow2.driver import Qcow2DirectoryDriver

__all__ = ["Qcow2DirectoryDriver"]
