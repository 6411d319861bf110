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

from dataclasses import dataclass
from pathlib import Path

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
