"""Typed fields of a parsed JSON object: each read checks the type and the range, and an error
names the file and the field's path, e.g. `run/checkpoint/manifest.json: extra.config.batch_size
is null, expected an integer >= 1`.

    meta = Fields(read_json(path), path, error=DataError)
    height = meta.integer("height", minimum=1)                 # required
    count = meta.integer("count", minimum=1, default=None)     # optional: None when absent
    made_by = meta.object("made_by", required=False)           # nested; empty when absent

JSON true and false are not integers here (Python's bool is an int), and 4.0 is not an integer.
"""

from __future__ import annotations

import json
import math
import os

_MISSING = object()


def show(value) -> str:
    """A JSON value as the message shows it: short, in JSON's spelling (null, true, "text")."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Fields:
    """A JSON object read field by field (see the module's docstring)."""

    def __init__(
        self, obj, file: str | os.PathLike, path: str = "", error: type[Exception] = ValueError
    ):
        self.file, self.path, self.error = file, path, error
        if not isinstance(obj, dict):
            where = path or "the content"
            raise error(f"{file}: {where} is {show(obj)}, expected a JSON object")
        self.obj = obj

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, value, expected: str):
        shown = "missing" if value is _MISSING else show(value)
        raise self.error(f"{self.file}: {self._name(key)} is {shown}, expected {expected}")

    def _get(self, key: str, default, expected: str):
        value = self.obj.get(key, _MISSING)
        if value is _MISSING and default is not _MISSING:
            return _MISSING
        if value is _MISSING:
            self._fail(key, value, expected)
        return value

    def has(self, key: str) -> bool:
        return key in self.obj

    def _scalar(self, key: str, expected: str, default, nullable: bool, ok):
        """The value if ok(value) holds (never for true or false), else an error naming it."""
        value = self._get(key, default, expected)
        if value is _MISSING:
            return default
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not ok(value):
            self._fail(key, value, expected + (" or null" if nullable else ""))
        return value

    def integer(self, key: str, *, minimum: int | None = None, default=_MISSING, nullable=False):
        expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
        return self._scalar(key, expected, default, nullable,
                            lambda v: isinstance(v, int) and (minimum is None or v >= minimum))

    def number(self, key: str, *, minimum: float | None = None, positive: bool = False,
               default=_MISSING, nullable: bool = False):
        """A finite number (an int or a float), as a float."""
        expected = ("a finite number" + (f" >= {minimum}" if minimum is not None else "")
                    + (" > 0" if positive else ""))
        value = self._scalar(key, expected, default, nullable, lambda v: (
            isinstance(v, (int, float)) and math.isfinite(v)
            and (minimum is None or v >= minimum) and (not positive or v > 0)))
        return None if value is None else float(value)

    def boolean(self, key: str, *, default=_MISSING) -> bool:
        value = self._get(key, default, "true or false")
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self._fail(key, value, "true or false")
        return value

    def string(self, key: str, *, choices: tuple[str, ...] | None = None, default=_MISSING):
        expected = "one of " + ", ".join(show(c) for c in choices) if choices else "a string"
        value = self._get(key, default, expected)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or (choices is not None and value not in choices):
            self._fail(key, value, expected)
        return value

    def object(self, key: str, *, required: bool = True) -> Fields:
        """The nested object; an empty one when absent and not required."""
        value = self._get(key, _MISSING if required else {}, "a JSON object")
        if value is _MISSING:
            value = {}
        if not isinstance(value, dict):
            self._fail(key, value, "a JSON object")
        return Fields(value, self.file, self._name(key), self.error)

    def numbers(self, key: str, *, length: int, positive: bool = False, default=_MISSING,
                nullable: bool = False) -> list[float] | None:
        """An array of `length` finite numbers (> 0 with positive), as floats."""
        expected = f"an array of {length} finite numbers" + (" > 0" if positive else "")
        value = self._get(key, default, expected)
        if value is _MISSING:
            return default
        if value is None and nullable:
            return None
        if not (isinstance(value, list) and len(value) == length and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (not positive or v > 0) for v in value)):
            self._fail(key, value, expected + (" or null" if nullable else ""))
        return [float(v) for v in value]

    def array(self, key: str, *, length: int | None = None, default=_MISSING):
        expected = "an array" + (f" of {length}" if length is not None else "")
        value = self._get(key, default, expected)
        if value is _MISSING:
            return default
        if not isinstance(value, list) or (length is not None and len(value) != length):
            self._fail(key, value, expected)
        return value
