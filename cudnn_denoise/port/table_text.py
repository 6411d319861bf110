"""The text form that the algorithm and engine tables share: a format line, optional comments, the
shape and math as `batch 4` ... `math tf32` lines, then one row a line (each table its own words).
The Fortran program reads both with the same rule: `#` lines are comments, words split on blanks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..userio.files import write_atomic


def format_table(format_line: str, rows: Iterable[str], batch: int, height: int, width: int,
                 math: str, comment: str = "") -> str:
    lines = [format_line] + ([f"# {comment}"] if comment else [])
    lines += [f"batch {batch}", f"height {height}", f"width {width}", f"math {math}", *rows]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    """Write a table atomically (a reader never sees half of it)."""
    return write_atomic(path, text.encode())


def read(path: Path, row: Callable[[list[str]], object | None],
         kind: str) -> tuple[dict[str, object], list]:
    """The header values (batch, height, width as ints, math) and the rows of a table; `row` makes
    a row of a line's words, or None when they are not one (ValueError naming the file and line)."""
    header: dict[str, object] = {}
    table = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        words = line.split()
        if not words or line.startswith("#"):
            continue
        if words[0] in ("batch", "height", "width") and len(words) == 2 and words[1].isdigit():
            header[words[0]] = int(words[1])
        elif words[0] == "math" and len(words) == 2:
            header["math"] = words[1]
        elif (parsed := row(words)) is not None:
            table.append(parsed)
        else:
            raise ValueError(f"{path}:{number}: not a line of an {kind} table: {line!r}")
    return header, table
