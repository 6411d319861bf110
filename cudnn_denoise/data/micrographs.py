"""Micrographs into training patches: robust scaling to [0, 1], patch grid, noise, even/odd names.

The seed's preprocessing of real data (EMPIAR-10025): each micrograph scaled to [0, 1], cut into
patches, the scaled patch the clean target and Poisson + Gaussian noise added for the input. Here
as array functions on frames already read; micrographs/convert.py reads the files and writes the dataset.

- Scaling (robust_range, to_unit): PERCENTILES of the micrograph's pixels (numpy.percentile,
  linear interpolation) go to 0 and 1, values outside are clipped. Even and odd sums of one movie
  share one map, from the percentiles of both frames' pixels together.
- Patches (corners): a grid of `size` x `size` patches every `stride` pixels from the top-left
  corner, `border` pixels in from every edge. What is left at the right and bottom, narrower than
  a patch, is dropped (edges "drop") or covered by one more patch flush with the far edge, which
  overlaps its neighbour (edges "cover").
- Noise (noisy_patches): synthetic.add_noise, the synthetic generator's model, each patch with a
  generator of its own seeded by (seed, input number, frame, patch number): the bytes depend
  only on the inputs, their order and the settings, not on --workers.
- Even/odd (half_of, match_halves): the two halves of a movie are matched by name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .format import DEFAULT_PATCH_SIZE, DataError
from .synthetic import DEFAULT_DOSE, DEFAULT_SIGMA, add_noise, check_noise

GENERATOR = "cudnn_denoise.data.micrographs"
GENERATOR_VERSION = 1  # bump when the same inputs and settings would give other bytes
PERCENTILES = (0.1, 99.9)  # of a micrograph's pixels: to 0 and 1
EDGES = ("drop", "cover")
MODES = ("noise", "even-odd")

# A name's half: "_EVN"/"_ODD" (MotionCor2 -SplitSum), "_even"/"_odd", also after "." or "-".
_HALF = re.compile(r"[._-](even|evn|odd)$", re.IGNORECASE)


@dataclass(frozen=True)
class Preprocessing:
    """How micrographs become samples; checked when made (ValueError naming the flag)."""

    mode: str = "noise"  # "noise": add the noise model; "even-odd": pair the two halves
    size: int = DEFAULT_PATCH_SIZE
    stride: int | None = None  # None: size (patches side by side)
    border: int = 0
    edges: str = "drop"
    percentiles: tuple[float, float] = PERCENTILES
    dose: float = DEFAULT_DOSE
    sigma: float = DEFAULT_SIGMA
    seed: int = 0
    both_ways: bool = True  # even-odd: also odd -> even

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        for flag, value, least in (("--size", self.size, 1), ("--stride", self.step, 1),
                                   ("--border", self.border, 0), ("--seed", self.seed, 0)):
            if value < least:
                raise ValueError(f"{flag} must be at least {least}, not {value}")
        if self.edges not in EDGES:
            raise ValueError(f"--edges must be one of {', '.join(EDGES)}, not {self.edges!r}")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"--percentiles needs 0 <= LOW < HIGH <= 100, not {low} {high}")
        check_noise(self.dose, self.sigma)

    @property
    def step(self) -> int:
        """Pixels from one patch's corner to the next."""
        return self.size if self.stride is None else self.stride

    def made_by(self) -> dict:
        """dataset.json's made_by: every setting that decides the bytes."""
        out = {"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "mode": self.mode,
               "size": self.size, "stride": self.step, "border": self.border, "edges": self.edges,
               "percentiles": list(self.percentiles)}
        if self.mode == "noise":
            out.update(seed=self.seed, dose=self.dose, gaussian_sigma=self.sigma)
        else:
            out.update(both_ways=self.both_ways)
        return out


def robust_range(frames: Sequence[np.ndarray], percentiles=PERCENTILES) -> tuple[float, float]:
    """(low, high): the percentiles of all pixels of `frames` together.

    DataError when a frame holds NaN or infinity, or when low == high (a flat image, or one
    whose pixels are nearly all one value: it has nothing to scale)."""
    for frame in frames:
        if not np.isfinite(frame).all():
            raise DataError(f"holds {int(np.isnan(frame).sum())} NaN and "
                            f"{int(np.isinf(frame).sum())} infinite values")
    pixels = frames[0] if len(frames) == 1 else np.concatenate([f.ravel() for f in frames])
    low, high = (float(v) for v in np.percentile(pixels, percentiles))
    if not high > low:
        raise DataError(f"its {percentiles[0]} and {percentiles[1]} percentiles are both {low}: "
                        "nothing to scale (a flat image?)")
    return low, high


def to_unit(frame: np.ndarray, low: float, high: float) -> np.ndarray:
    """float32 clip((frame - low) / (high - low), 0, 1)."""
    scaled = (frame.astype(np.float32) - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def corners(length: int, size: int, step: int, border: int, edges: str) -> list[int]:
    """The first pixel of each patch along an axis of `length` pixels (see the module's docstring);
    [] when the axis, less its borders, is shorter than one patch."""
    first, end = border, length - border  # the usable pixels: [first, end)
    if end - first < size:
        return []
    starts = list(range(first, end - size + 1, step))
    if edges == "cover" and starts[-1] + size < end:
        starts.append(end - size)
    return starts


def grid(height: int, width: int, p: Preprocessing) -> list[tuple[int, int]]:
    """(row, col) of each patch's top-left corner, row by row."""
    rows = corners(height, p.size, p.step, p.border, p.edges)
    cols = corners(width, p.size, p.step, p.border, p.edges)
    return [(r, c) for r in rows for c in cols]


def cut(image: np.ndarray, at: list[tuple[int, int]], size: int) -> np.ndarray:
    """The patches of `image` at those corners: (len(at), size, size) float32."""
    return np.stack([image[r:r + size, c:c + size] for r, c in at]).astype(np.float32, copy=False)


def noisy_patches(clean: np.ndarray, p: Preprocessing, number: int, frame: int) -> np.ndarray:
    """The noisy inputs of one micrograph's clean patches (n, size, size)."""
    noisy = np.empty_like(clean)
    for index, patch in enumerate(clean):
        rng = np.random.default_rng((p.seed, number, frame, index))
        noisy[index] = add_noise(patch, rng, p.dose, p.sigma)
    return noisy


def half_of(path: Path) -> tuple[str, str | None]:
    """(movie, half): the name less its half marker, and "even", "odd" or None (no marker)."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    found = _HALF.search(stem)
    if found is None:
        return stem, None
    return stem[: found.start()], "odd" if found.group(1).lower() == "odd" else "even"


def match_halves(evens: list[Path], odds: list[Path]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(pairs, problems): each even sum with the odd sum of the same movie, in the even files'
    order. A movie's name is the file's name less its extension and half marker (_EVN, _ODD,
    _even, _odd; also after "." or "-"), so x_EVN.mrc pairs with x_ODD.mrc, and even/x.mrc with
    odd/x.mrc. A file marked as the other half is left out of a side (so one folder holding both
    halves can be given to both flags). A problem line, and no pair, for: a movie without its
    other half, two files of one movie on one side, one file given as both halves."""
    problems: list[str] = []
    even_by, even_twice = _by_movie(evens, "odd", "--even", problems)
    odd_by, odd_twice = _by_movie(odds, "even", "--odd", problems)
    skip = even_twice | odd_twice  # named already
    pairs = []
    for movie, even in even_by.items():
        if movie in skip:
            continue
        if movie not in odd_by:
            problems.append(f"{even}: no odd sum of movie {movie!r} among --odd")
        elif odd_by[movie].resolve() == even.resolve():
            problems.append(f"{even}: given as both the even and the odd sum of movie {movie!r}")
        else:
            pairs.append((even, odd_by[movie]))
    for movie, odd in odd_by.items():
        if movie not in even_by and movie not in skip:
            problems.append(f"{odd}: no even sum of movie {movie!r} among --even")
    return pairs, problems


def _by_movie(files: list[Path], other: str, flag: str,
              problems: list[str]) -> tuple[dict[str, Path], set[str]]:
    """({movie: file}, movies named twice) of one side, leaving out files marked `other`."""
    movies: dict[str, Path] = {}
    twice: set[str] = set()
    for path in files:
        movie, half = half_of(path)
        if half == other:
            continue
        if movie in movies:
            problems.append(f"{movies[movie]} and {path}: {flag} holds two files of movie "
                            f"{movie!r}; both skipped")
            twice.add(movie)
        else:
            movies[movie] = path
    return {m: f for m, f in movies.items() if m not in twice}, twice
