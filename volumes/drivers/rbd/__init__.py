"""The Ceph RBD driver: a pool is a Ceph pool (or a namespace of one) reached through the `rbd` CLI
and qemu-img's `rbd:` protocol (docs/storage.md "Ceph RBD pools")."""

from volumes.drivers.rbd.driver import RbdDriver

__all__ = ["RbdDriver"]
