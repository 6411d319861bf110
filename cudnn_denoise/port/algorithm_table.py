"""The algorithm table: the cuDNN algorithms a model chose, as text the Fortran program reads.

train writes OUT/algorithms.txt for the legacy cudnn step, and dump into its OUT for the dumped
step; `denoise_train --algorithms FILE`
(fortran/denoise_algorithms.f90) reads it, so that both run the same kernels. Format 1, one fact a
line, `#` lines are comments (docs/fortran.md, "The algorithm table"):

    batch 4
    height 256
    width 256
    math fp32
    conv1 forward 1 CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM 0 2 CUDNN_FMA_MATH
    ...       (layer, direction, algo, its name, workspace bytes, math type, its name)

The directions come in the order the model chooses them (forward, backward_filter, backward_data);
conv1 has no backward_data. Fortran reads the numbers; the names are for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import table_text

FILE_NAME = "algorithms.txt"  # in train's --out, and in denoise_train's
FORMAT_LINE = "# cudnn_denoise algorithm table, format 1 (docs/fortran.md)"
DIRECTIONS = ("forward", "backward_filter", "backward_data")


@dataclass(frozen=True)
class Row:
    layer: str
    direction: str
    algo: int
    algo_name: str
    workspace: int  # bytes
    math_type: int
    math_name: str

    def numbers(self) -> tuple:
        """What the Fortran program reads of a row (and writes back, with "-" for the names)."""
        return self.layer, self.direction, self.algo, self.workspace, self.math_type


def rows(model) -> list[Row]:
    """The rows of a legacy DenoiseCNN's choices (model.algorithms(): layer -> direction -> Choice)."""
    from ..bindings import ffi

    math_names = dict(ffi.typeof("cudnnMathType_t").elements)
    return [Row(layer, d, c.algo, c.algo_name, c.workspace, c.math_type, math_names.get(c.math_type, "-"))
            for layer, choices in model.algorithms().items()
            for d in DIRECTIONS if (c := choices.get(d)) is not None]


def format_table(table: list[Row], batch: int, height: int, width: int, math: str, comment: str = "") -> str:
    lines = (f"{r.layer} {r.direction} {r.algo} {r.algo_name} {r.workspace} {r.math_type} "
             f"{r.math_name}" for r in table)
    return table_text.format_table(FORMAT_LINE, lines, batch, height, width, math, comment)


def model_comment(model) -> str:
    """The comment train and dump put in a model's table: the GPU and the cuDNN that chose."""
    from ..bindings import cudnn

    return f"{model.ctx.gpu_name}, cuDNN {cudnn.cudnnGetVersion()}"


def model_text(model, batch: int, height: int, width: int, math: str) -> str:
    """The table of a legacy DenoiseCNN's choices as train writes it."""
    return format_table(rows(model), batch, height, width, math, comment=model_comment(model))


def write(path: Path, table: list[Row], batch: int, height: int, width: int, math: str,
          comment: str = "") -> Path:
    """Write the table atomically (a reader never sees half of it)."""
    return table_text.write(path, format_table(table, batch, height, width, math, comment))


def _row(words: list[str]) -> Row | None:
    if len(words) != 7 or words[1] not in DIRECTIONS:
        return None
    layer, direction, algo, algo_name, workspace, math_type, math_name = words
    return Row(layer, direction, int(algo), algo_name, int(workspace), int(math_type), math_name)


def read(path: Path) -> tuple[dict[str, object], list[Row]]:
    """The header values (batch, height, width as ints, math) and the rows of a table."""
    return table_text.read(path, _row, "algorithm")
