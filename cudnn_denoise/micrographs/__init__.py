"""Micrograph files: reading and writing MRC, TIFF and raw frames, and turning them into datasets.

sources.py  inputs from files, folders, patterns and STAR files, each opened by its suffix
star.py  RELION micrograph STAR files: the micrographs they name, and written back (denoise)
mrc_io.py tiff_io.py raw_io.py  one frame at a time in, and out where a format is written
convert.py  make_dataset --from-mrc: micrograph pairs cut into (noisy, clean) patches
"""
