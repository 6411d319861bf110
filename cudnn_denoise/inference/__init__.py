"""Denoising whole micrographs with a trained checkpoint: the logic behind `python -m cudnn_denoise.denoise`.

tiling.py (exact tiles with a 3-pixel halo), intensity.py (into the training data's range and
back), files.py (outputs named and checked; the inputs are found, read and written by
cudnn_denoise.micrographs), engine.py (the network on a backend, tile by tile, with
the tile halved on out-of-memory), pipeline.py (reading.py's threads ahead of the network,
writing.py's behind it; tasks.py runs a file's steps in order).
"""
