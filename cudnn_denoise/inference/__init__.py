"""Denoising whole micrographs with a trained checkpoint: the logic behind `python -m cudnn_denoise.denoise`.

tiling.py (exact tiles with a 3-pixel halo), intensity.py (into the training data's range and
back), files.py (outputs named and checked; the inputs are found, read and written by
cudnn_denoise.micrographs), engine.py (the network on a backend, tile by tile, with
the tile halved on out-of-memory), pipeline.py (one file at a time with a one-thread prefetch).
"""
