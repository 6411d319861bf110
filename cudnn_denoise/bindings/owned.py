"""Owned: the lifetime every handle and descriptor shares — released once, by close() or `with`.

`__del__` is only a backstop: it never raises and does nothing once the interpreter is shutting
down (the library may already be unloaded).
"""

from __future__ import annotations

import sys


class Owned:
    """Holds `ptr` until close(); subclasses say how to release it."""

    ptr = None

    def _release(self, ptr) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self.ptr is not None:
            try:  # ptr stays set during the call, so a trace can still name what is released
                self._release(self.ptr)
            finally:
                self.ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if sys.is_finalizing() or self.ptr is None:
            return
        try:
            self.close()
        except Exception:  # a backstop must not raise from the garbage collector
            pass
