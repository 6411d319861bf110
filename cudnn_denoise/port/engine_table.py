"""The engine table: the graph-API engines a model chose, as text the Fortran program reads.

train --graph-api writes OUT/engines.txt beside algorithms.txt; `denoise_train --graph-api
--engines FILE` (fortran/denoise_graph_api.f90, read_engine_table) reads it and takes, for each
graph, the engine configuration at the same position of cuDNN's heuristics lists (mode A, then
the fallback list) after checking its engine global index, so that both run the same engines.
Format 1, one fact a line, `#` lines are comments:

    batch 4
    height 256
    width 256
    math tf32
    conv2 backward_data 3 41 graph backward_data relu bias
    ...       (layer, direction, position, engine global index, the operation's name)

The operation's name says the dgrad form (layers/fusion.py DGRAD_FORMS): "... relu bias" fused
with the bias reduction, "... relu" without it; a relu_backward row is a split form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import table_text

FILE_NAME = "engines.txt"  # in train's --out
FORMAT_LINE = "# cudnn_denoise engine table, format 1 (docs/fortran.md)"


@dataclass(frozen=True)
class Row:
    layer: str
    direction: str  # forward, backward_filter, backward_data, relu_backward
    position: int  # in heuristics mode A's list, then the fallback list's
    engine: int  # CUDNN_ATTR_ENGINE_GLOBAL_INDEX
    operation: str  # FusedOp.name, e.g. "graph backward_data relu bias"


def rows(model) -> list[Row]:
    """The rows of a graph-API DenoiseCNN's choices, layer by layer, in the order each chose."""
    return [Row(conv.spec.name, direction, op.position, op.choice.algo, op.name)
            for conv in (model.conv1, model.conv2, model.conv3) for direction, op in conv.ops.items()]


def format_table(table: list[Row], batch: int, height: int, width: int, math: str, comment: str = "") -> str:
    lines = (f"{r.layer} {r.direction} {r.position} {r.engine} {r.operation}" for r in table)
    return table_text.format_table(FORMAT_LINE, lines, batch, height, width, math, comment)


def write(path: Path, table: list[Row], batch: int, height: int, width: int, math: str,
          comment: str = "") -> Path:
    """Write the table atomically (a reader never sees half of it)."""
    return table_text.write(path, format_table(table, batch, height, width, math, comment))


def _row(words: list[str]) -> Row | None:
    if len(words) < 5 or not (words[2].isdigit() and words[3].isdigit()):
        return None
    return Row(words[0], words[1], int(words[2]), int(words[3]), " ".join(words[4:]))


def read(path: Path) -> tuple[dict[str, object], list[Row]]:
    """The header values (batch, height, width as ints, math) and the rows of a table."""
    return table_text.read(path, _row, "engine")
