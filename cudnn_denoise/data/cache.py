"""The page-cache policy of training reads (train --cache): keep what is read cached, or drop it.

    keep  the reader leaves what it reads in the kernel's page cache, so a set that fits in memory
          comes from the disk once and from memory in every later epoch. The cache is the
          kernel's, not a copy in the process (the reader reads with preadv into its own few
          batch buffers): the process's RSS stays the same whatever the set's size, and the kernel
          gives the pages to whoever needs memory.
    drop  each range is dropped from the cache once read (posix_fadvise DONTNEED; reader.py). For
          a set larger than memory, keeping gains nothing (a shuffled epoch evicts the pages the
          next one would need first) and would push other programs' memory out.
    auto  keep when both files fit in KEEP_SHARE of the memory available now (MemAvailable in
          /proc/meminfo: free memory plus what the kernel can reclaim), else drop.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

POLICIES = ("auto", "keep", "drop")
KEEP_SHARE = 0.5  # of MemAvailable: leaves the other half to the rest of the machine
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class CacheChoice:
    """What the reader does with the pages it reads, and the sentence that says why."""

    keep: bool
    why: str

    def describe(self) -> str:
        return f"page cache: {'keep' if self.keep else 'drop'} ({self.why})"


def mem_available(meminfo: Path = MEMINFO) -> int | None:
    """Bytes of MemAvailable in /proc/meminfo, or None where there is no such line."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            fields = value.split()
            return int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return None


def choose(policy: str, nbytes: int, available: int | None) -> CacheChoice:
    """The choice for a dataset of `nbytes` (both files) when `available` bytes of memory are
    available now (mem_available(); None: unknown)."""
    if policy not in POLICIES:
        raise ValueError(f"--cache must be one of {', '.join(POLICIES)}, not {policy!r}")
    if policy != "auto":
        return CacheChoice(policy == "keep", f"--cache {policy}")
    size = f"both files {_gib(nbytes)}"
    if available is None:
        return CacheChoice(False, f"--cache auto: the memory available is unknown ({MEMINFO} has "
                                  "no MemAvailable), so nothing is kept")
    share = f"{KEEP_SHARE:.0%} of the {_gib(available)} available now"
    if nbytes <= KEEP_SHARE * available:
        return CacheChoice(True, f"--cache auto: {size} fit in {share}")
    return CacheChoice(False, f"--cache auto: {size} exceed {share}")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def drop_cached(fd: int, offset: int = 0, length: int = 0) -> None:
    """Ask the kernel to drop the page cache of a byte range (0, 0: the whole file).

    Clean pages go at once; dirty ones (just written) stay until written back, so writers call
    os.fdatasync first. A hint, not a guarantee: tmpfs, for one, keeps every page.
    """
    os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def cached_bytes(path: str | os.PathLike) -> int:
    """Bytes of the file now in the page cache: mincore() on a mapping that touches no page.

    The tests and bench_reader use it to see what the reader leaves cached, and whether a
    "cold" file really is.
    """
    size = os.path.getsize(path)
    if size == 0:
        return 0
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"{path}: mmap failed")
        try:
            resident = (ctypes.c_ubyte * -(-size // mmap.PAGESIZE))()
            if libc.mincore(address, size, resident) != 0:
                raise OSError(ctypes.get_errno(), f"{path}: mincore failed")
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    return int((np.frombuffer(resident, np.uint8) & 1).sum()) * mmap.PAGESIZE


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library with mmap, munmap and mincore declared (Python's mmap offers no mincore)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc
