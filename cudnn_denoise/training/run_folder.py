"""The names in a training run's folder (train --out; denoise_train writes the same), written once.

compare, lossplot, the training loop and fortran_parity read them from here; the Fortran program
spells them in denoise_train.f90, and fortran_parity checks on the GPU that both programs' folders
hold the same files.
"""

from __future__ import annotations

from .. import checkpoint
from ..port import algorithm_table, engine_table

CHECKPOINT = checkpoint.RUN_SUBFOLDER  # params.bin + manifest.json, replaced whole at each save
METRICS = "metrics.jsonl"  # one JSON object per log line
LOSSES = "losses.tsv"  # `step<TAB>loss`, every step
LOSS_PLOT = "loss.png"
ALGORITHMS = algorithm_table.FILE_NAME  # the convolution algorithms a GPU run chose
ENGINES = engine_table.FILE_NAME  # with --graph-api: the engine of each operation graph
LOGS = (METRICS, LOSSES, LOSS_PLOT)
# What train --overwrite sets aside: the checkpoint first (with what a crashed save left), the
# logs, and the algorithm and engine tables.
REPLACED = (CHECKPOINT, *checkpoint.save_leftovers(CHECKPOINT), *LOGS, ALGORITHMS, ENGINES)
