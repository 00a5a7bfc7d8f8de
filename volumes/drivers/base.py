"""The storage-driver interface. A driver knows image names and sizes in one pool, never the ORM.

Image names are relative to the pool (`volume/<uuid>`, `snapshots/<volume>/<snapshot>.qcow2`),
so a directory driver maps them to files and a Ceph RBD driver could map them to RBD images.
Every method is idempotent where the service may call it again after a crash.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

ProgressCallback = Callable[[float, int, int], None]
"""progress(percent 0-100, bytes_done, bytes_total)."""


@dataclass(frozen=True)
class ImageInfo:
    """What a driver reports about one image."""

    name: str
    format: str
    virtual_size: int
    allocated: int
    backing: str | None = None


@dataclass(frozen=True)
class ImportSource:
    """A vetted import source: its resolved path, detected format and virtual size."""

    path: str
    format: str
    virtual_size: int
    details: dict = field(default_factory=dict)


class StorageDriver(abc.ABC):
    """The control path of one pool's storage: create, import, inspect and delete images."""

    def __init__(self, root: str):
        self.root = root

    @abc.abstractmethod
    def check_available(self) -> None:
        """Raise PoolUnavailable unless the pool can be written now."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """Whether the image is published (a partial write never counts)."""

    @abc.abstractmethod
    def create_volume(self, name: str, size: int) -> ImageInfo:
        """Publish an empty image of `size` bytes; if it is already published, return it."""

    @abc.abstractmethod
    def inspect_import(self, path: str, allowed_roots: list[str]) -> ImportSource:
        """Vet an untrusted file for import; raise ImportRejected with the reason."""

    @abc.abstractmethod
    def import_image(
        self, source: ImportSource, allowed_roots: list[str], name: str, size: int, progress: ProgressCallback
    ) -> ImageInfo:
        """Copy a vetted source into an independent image of `size` bytes; publish it at the end."""

    @abc.abstractmethod
    def delete_image(self, name: str) -> bool:
        """Remove the image and any partial write of it; return whether anything was removed."""

    @abc.abstractmethod
    def info(self, name: str) -> ImageInfo:
        """Format, virtual size, allocated bytes and backing of a published image."""

    @abc.abstractmethod
    def access_path(self, mount_path: str, name: str) -> str:
        """Where a host that mounts the pool at `mount_path` opens the image."""
