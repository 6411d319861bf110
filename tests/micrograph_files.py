"""Micrograph files for the tests, written with the real mrcfile and tifffile (imported when used):
MRC micrographs and stacks with a header, TIFF pages, cryo-EM-like micrographs (and even/odd
halves) made from the synthetic particles, and RELION micrograph STAR files naming micrographs.

Also a small command for the README-sized run on large micrographs:
    python tests/micrograph_files.py OUT_DIR --count 4 --size 4096 [--even-odd]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cudnn_denoise.data.synthetic import SyntheticPatches


def write_mrc(path: Path, data: np.ndarray, *, voxel_size=None, origin=None, labels=(),
              stack: bool = False) -> Path:
    """data as a new MRC file (its dtype decides the mode); voxel_size: one number or (x, y, z)."""
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if stack:
            mrc.set_image_stack()
        if voxel_size is not None:
            mrc.voxel_size = voxel_size
        if origin is not None:
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
        for label in labels:
            mrc.add_label(label)
    return path


def read_mrc(path: Path) -> np.ndarray:
    """An MRC file's data, as stored."""
    import mrcfile

    with mrcfile.open(path) as mrc:
        return mrc.data.copy()


def write_tiff(path: Path, data: np.ndarray) -> Path:
    """data (H, W) as a one-page TIFF, (N, H, W) as N grey pages."""
    import tifffile

    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def write_star(path: Path, names: list[str], *, relion: str = "3.1") -> Path:
    """A micrographs STAR file as RELION writes it, naming `names`: 3.1, a data_optics table and a
    data_micrographs table, each after a `# version 30001` line; 3.0, one unnamed table and no
    version. Each row has a CTF image name, a defocus and a figure of merit beside its name."""
    rows = "".join(f"{name} {Path(name).with_suffix('.ctf')}:mrc {10000.5 + i:12.6f} "
                   f"{0.1234567 * (i + 1):12.7f} {1 + i % 2:12d} \n" for i, name in enumerate(names))
    columns = ["rlnMicrographName", "rlnCtfImage", "rlnDefocusU", "rlnCtfFigureOfMerit",
               "rlnOpticsGroup"]
    header = "".join(f"_{column} #{i} \n" for i, column in enumerate(columns, 1))
    if relion == "3.0":
        text = f"\ndata_\n\nloop_ \n{header}{rows} \n"
    else:
        text = ("\n# version 30001\n\ndata_optics\n\nloop_ \n_rlnOpticsGroupName #1 \n"
                "_rlnOpticsGroup #2 \n_rlnMicrographOriginalPixelSize #3 \n_rlnVoltage #4 \n"
                "_rlnMicrographPixelSize #5 \n"
                "opticsGroup1            1     0.885000   300.000000     1.770000 \n"
                "opticsGroup2            2     0.885000   200.000000     1.770000 \n \n\n"
                f"# version 30001\n\ndata_micrographs\n\nloop_ \n{header}{rows} \n")
    path.write_text(text)
    return path


def identity_micrograph(height: int, width: int, dtype=np.float32) -> np.ndarray:
    """Pixel (r, c) holds r * width + c: a patch's values say where it was cut."""
    return (np.arange(height * width, dtype=np.int64).reshape(height, width)).astype(dtype)


def movie_halves(height: int, width: int, seed: int, dose: float = 20.0):
    """(even, odd) float32 sums of one movie: two independent Poisson draws of one image at dose/2
    electrons per pixel each, plus the image itself (the signal both halves share)."""
    rng = np.random.default_rng(seed)
    signal = SyntheticPatches(max(height, width), seed=seed).pair(0)[1][:height, :width]
    mean = dose / 2 * (0.5 + signal)  # electrons per pixel of one half
    return (rng.poisson(mean).astype(np.float32), rng.poisson(mean).astype(np.float32))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write cryo-EM-like MRC micrographs or even/odd sums.")
    p.add_argument("out", type=Path)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--pixel-size", type=float, default=1.06)
    p.add_argument("--first", type=int, default=0,
                   help="the first micrograph's number and seed: another --first gives other micrographs")
    p.add_argument("--even-odd", action="store_true", help="write x_EVN.mrc and x_ODD.mrc halves")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for index in range(args.first, args.first + args.count):
        even, odd = movie_halves(args.size, args.size, seed=index)
        if args.even_odd:
            write_mrc(args.out / f"mic{index:02d}_EVN.mrc", even, voxel_size=args.pixel_size)
            write_mrc(args.out / f"mic{index:02d}_ODD.mrc", odd, voxel_size=args.pixel_size)
        else:
            write_mrc(args.out / f"mic{index:02d}.mrc", even + odd, voxel_size=args.pixel_size)
        print(f"wrote micrograph {index + 1 - args.first} of {args.count} ({args.size}x{args.size})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
