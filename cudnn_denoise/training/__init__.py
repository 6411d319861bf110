"""Training runs: the loop behind `python -m cudnn_denoise.train` and what a run folder records.

loop.py  Trainer: batches in, steps, losses, validation, checkpoints, signals
start.py  the run's datasets, first parameters (new, --init, resumed) and intensity statistics
run_record.py  the run's configuration and its check on --resume
run_folder.py  the names of a run folder's files, once
earlier_run.py  train --overwrite: the earlier run set aside until the new one has a checkpoint
lossplot.py  losses.tsv drawn as a PNG
profile.py  --profile: per-phase times of the step
"""
