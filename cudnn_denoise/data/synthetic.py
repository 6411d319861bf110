"""Synthetic cryo-EM-like (noisy, clean) patches, and writing them as a dataset.

The particle is a proteasome-like cylinder: four stacked rings of seven subunits, each subunit a
cluster of Gaussian blobs (224 in all). A few projection templates are made once per dataset, at
random 3-D orientations, and filtered once (Gaussian low-pass, optionally a CTF-like oscillation).
A clean patch places randomly chosen templates, turned by multiples of 90 degrees and mirrored, at
random positions (dark particles on lighter ice) and is normalised to [0, 1]. Its noisy twin
follows the seed's noise model: Poisson counts at `dose` electrons per pixel of value 1, plus
Gaussian noise of sigma 0.05, clipped to [0, 1] so both images share one scale.

Every sample draws from its own generator, seeded by (seed, index): the bytes depend only on the
seed and the settings, and a sample can be remade alone. write_dataset streams samples to disk in
constant memory. Filtering templates instead of whole patches keeps each patch FFT-free.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from cudnn_denoise.data.format import DTYPE, FILE_DTYPES, Dataset
from cudnn_denoise.data.writer import check_target, ordered_map, write_pairs

DEFAULT_DOSE = 5.0  # electrons per pixel where the clean image is 1
DEFAULT_SIGMA = 0.05  # the seed's Gaussian read noise
GENERATOR_VERSION = 1  # bump when the same seed would give other bytes

# Particle and patch geometry, in units of the particle's length D (its cylinder axis).
RINGS_Z = (-0.375, -0.125, 0.125, 0.375)  # four heptameric rings, like the 20S proteasome
SUBUNITS_PER_RING = 7
RING_RADIUS = 0.22
BLOBS_PER_SUBUNIT = 8
BLOB_SIGMA = 0.035
PARTICLE_FRACTION = 0.12  # D as a fraction of the patch size
PARTICLES_PER_D2 = 0.3  # mean particles per D x D of patch area
LOWPASS_CYCLES = 12.0  # Gaussian low-pass at 12 cycles per D
CTF_FIRST_ZERO = 4.0  # first CTF zero at 4 cycles per D
AMPLITUDE_CONTRAST = 0.1


def check_noise(dose: float, sigma: float) -> None:
    """ValueError unless dose > 0 and sigma >= 0 are finite (the flags --dose and --sigma)."""
    if not (np.isfinite(dose) and dose > 0):
        raise ValueError(f"--dose must be a finite number above 0, not {dose}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"--sigma must be a finite number of 0 or more, not {sigma}")


def add_noise(clean: np.ndarray, rng: np.random.Generator, dose: float, sigma: float) -> np.ndarray:
    """The seed's noise model: clip(Poisson(dose * clean) / dose + Normal(0, sigma), 0, 1).

    clean: float32 in [0, 1], any shape; the Poisson counts are drawn first, then the Gaussian, so
    a generator in the same state gives the same bytes. Returns a new float32 array.
    """
    counts = rng.poisson(clean * np.float32(dose))
    noisy = counts.astype(np.float32) * np.float32(1.0 / dose)
    noisy += rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma)
    np.clip(noisy, 0.0, 1.0, out=noisy)
    return noisy


class SyntheticPatches:
    """The samples of one synthetic dataset: pair(index) -> (noisy, clean), each (size, size)."""

    def __init__(self, size: int, seed: int = 0, *, dose: float = DEFAULT_DOSE,
                 sigma: float = DEFAULT_SIGMA, ctf: bool = True, templates: int = 16):
        if size < 16:
            raise ValueError(f"size must be at least 16 pixels, not {size}")
        check_noise(dose, sigma)
        if templates < 1:
            raise ValueError(f"templates must be at least 1, not {templates}")
        self.size, self.seed, self.dose, self.sigma, self.ctf = size, seed, dose, sigma, ctf
        self.particle_px = max(8.0, PARTICLE_FRACTION * size)  # D in pixels
        rng = np.random.default_rng((seed, 0))  # stream 0: the particle and its templates
        blobs = _proteasome_blobs(rng)
        box = 2 * int(np.ceil(self.particle_px))  # room for the CTF's fringes around a particle
        self.templates = [self._template(blobs, _random_rotation(rng), box)
                          for _ in range(templates)]

    @property
    def settings(self) -> dict:
        """What made the data, for dataset.json: enough to remake the same bytes."""
        return {
            "generator": "cudnn_denoise.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "size": self.size,
            "dose": self.dose,
            "gaussian_sigma": self.sigma,
            "ctf": self.ctf,
            "templates": len(self.templates),
            "particle": "proteasome-like: 4 rings x 7 subunits x 8 Gaussian blobs",
        }

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(noisy, clean) of sample `index`: float32 (size, size), values in [0, 1]."""
        rng = np.random.default_rng((self.seed, 1, index))  # stream 1: one generator per sample
        clean = self._clean(rng)
        return add_noise(clean, rng, self.dose, self.sigma), clean

    def _clean(self, rng: np.random.Generator) -> np.ndarray:
        size, box = self.size, self.templates[0].shape[0]
        # The image is padded by a box on each side so particles can cross the patch's edges.
        canvas = np.zeros((size + 2 * box, size + 2 * box), np.float32)
        count = rng.poisson(PARTICLES_PER_D2 * (size / self.particle_px) ** 2)
        for _ in range(count):
            template = self.templates[rng.integers(len(self.templates))]
            template = np.rot90(template, k=rng.integers(4))
            if rng.integers(2):
                template = template[:, ::-1]
            # A centre anywhere in the patch puts the box's corner at centre + box/2 in the canvas.
            row, col = rng.integers(0, size, size=2) + box // 2
            canvas[row:row + box, col:col + box] -= rng.uniform(0.8, 1.2) * template
        clean = canvas[box:box + size, box:box + size]
        low, high = clean.min(), clean.max()
        scale = np.float32(1.0 / (high - low)) if high > low else np.float32(0.0)
        return ((clean - low) * scale).astype(DTYPE)

    def _template(self, blobs: np.ndarray, rotation: np.ndarray, box: int) -> np.ndarray:
        """Projection of the blobs, turned by `rotation`, along z; filtered; (box, box) float32."""
        d = self.particle_px
        centres = blobs @ rotation.T * d + box / 2  # (K, 3) in pixels
        axis = np.arange(box) + 0.5
        sigma = BLOB_SIGMA * d
        # A 3-D Gaussian projects to a 2-D one, separable in x and y: the sum is one matmul.
        gy = np.exp(-0.5 * ((axis[None, :] - centres[:, 1:2]) / sigma) ** 2)  # (K, box)
        gx = np.exp(-0.5 * ((axis[None, :] - centres[:, 0:1]) / sigma) ** 2)  # (K, box)
        projection = gy.T @ gx
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(box), np.fft.rfftfreq(box), indexing="ij"))
        transfer = np.exp(-0.5 * (f * d / LOWPASS_CYCLES) ** 2)
        if self.ctf:
            # chi = pi * f^2 / f0^2 puts the first zero at f0; phase contrast plus 10% amplitude.
            chi = np.pi * (f * d / CTF_FIRST_ZERO) ** 2
            phase = np.sqrt(1 - AMPLITUDE_CONTRAST**2)
            transfer *= phase * np.sin(chi) + AMPLITUDE_CONTRAST * np.cos(chi)
        filtered = np.fft.irfft2(np.fft.rfft2(projection) * transfer, s=projection.shape)
        return (filtered / np.abs(filtered).max()).astype(np.float32)


def write_dataset(out_dir: str | os.PathLike, samples: int, size: int = 1024, seed: int = 0, *,
                  dose: float = DEFAULT_DOSE, sigma: float = DEFAULT_SIGMA, ctf: bool = True,
                  overwrite: bool = False, workers: int = 1, dtype: str = "float32",
                  progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Write `samples` synthetic pairs of size x size to out_dir/{noisy,clean}.bin + dataset.json.

    Streams samples in order through writer.write_pairs (constant memory; complete files or none).
    With workers > 1, that many processes make the next samples while earlier ones are written:
    each sample depends only on (seed, index), so the bytes are the same for any number of
    workers. dtype "float16" stores each float32 sample rounded to float16. `progress(done,
    total)` is called after each sample. Returns the opened Dataset.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, not {samples}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, not {seed}")
    maker = SyntheticPatches(size, seed, dose=dose, sigma=sigma, ctf=ctf)  # checks the settings
    check_target(out_dir, overwrite, nbytes=2 * samples * size * size * FILE_DTYPES[dtype].itemsize)

    def reported(pairs):
        for index, pair in enumerate(pairs):
            yield pair
            if progress is not None:
                progress(index + 1, samples)

    with ordered_map(maker.pair, range(samples), workers) as pairs:
        return write_pairs(out_dir, reported(pairs), size, size, maker.settings,
                           overwrite=overwrite, dtype=dtype)


def _proteasome_blobs(rng: np.random.Generator) -> np.ndarray:
    """(224, 3) blob centres in units of D: one random subunit shape per ring, repeated 7-fold."""
    centres = []
    for ring, z in enumerate(RINGS_Z):
        subunit = rng.normal(0.0, 0.05, size=(BLOBS_PER_SUBUNIT, 3))
        twist = np.pi / SUBUNITS_PER_RING * (ring % 2)  # alpha and beta rings offset
        for k in range(SUBUNITS_PER_RING):
            angle = 2 * np.pi * k / SUBUNITS_PER_RING + twist
            c, s = np.cos(angle), np.sin(angle)
            turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            centres.append((subunit + [RING_RADIUS, 0.0, z]) @ turn.T)
    return np.concatenate(centres)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform over SO(3), from a normalised Gaussian quaternion."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
