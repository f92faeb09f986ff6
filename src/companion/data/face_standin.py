"""A synthetic stand-in for UTKFace's ResNet-18 features, so the face-age pipeline runs without images.

The book's automatic build cannot download UTKFace or ImageNet weights, so its ``ci`` profile runs
every step *after* feature extraction (split, head training, R², similarity, LOWESS trends) on
made-up features with the same shape of problem:

* five groups with UTKFace's proportions (:data:`UTKFACE_COUNTS`), group ``i`` centred at a random
  direction $c_i$ of the latent space;
* an age signal: a smooth nonlinear function of an *apparent* age (log-age plus noise of standard
  deviation ``age_noise``, which caps the attainable R² near UTKFace's) along a few random
  directions;
* features ``softplus(latent)``, non-negative like the average-pooled ReLU features of a ResNet;
* the held-out group ("Others") is a *mixture*: each of its members sits a random fraction
  ``w ~ U(0, 1)`` of the way from a random training group's centre towards its own centre
  (``ood_distance`` times farther out than the others), and its age signal is weaker by a factor
  ``1 - ood_fade * w``. So some "Others" faces look like the training faces and some are far from
  all of them, which gives Figure 4's x-axis (similarity to the training features) a range.

Nothing here is calibrated on real faces: it exercises the code, it does not predict the paper's
numbers. Chapter: ``book/experiments/faces``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["UTKFACE_COUNTS", "StandIn", "make_standin"]

#: Images per race code (White, Black, Asian, Indian, Others) in the common 23,708-image release.
UTKFACE_COUNTS = (10078, 4528, 3434, 3976, 1692)


@dataclasses.dataclass(frozen=True)
class StandIn:
    """Stand-in features ``(n, dim)``, ages ``(n,)`` in years and race codes ``(n,)``."""

    features: np.ndarray
    ages: np.ndarray
    races: np.ndarray
    shift: np.ndarray  # the mixing fraction w of each image (0 outside the held-out group)


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    """UTKFace-like ages: about 15% children (1-14), the rest log-normal around 32, at most 100."""
    child = rng.random(n) < 0.15
    adult = np.exp(rng.normal(np.log(32.0), 0.4, n))
    return np.where(child, rng.integers(1, 15, n), np.clip(np.round(adult), 15, 100)).astype(float)


def make_standin(n: int = 3000, dim: int = 512, seed: int = 0, noise: float = 0.6, age_noise: float = 0.4,
                 ood_distance: float = 5.0, ood_fade: float = 0.9) -> StandIn:
    """Sample ``n`` stand-in faces (see the module docstring) with ``numpy.random.default_rng(seed)``."""
    if n < 50:
        raise ValueError(f"n must be at least 50 so that every group has members, got {n}")
    if dim < 8:
        raise ValueError(f"dim must be at least 8, got {dim}")
    rng = np.random.default_rng(seed)
    counts = np.asarray(UTKFACE_COUNTS, dtype=float)
    races = rng.choice(len(counts), size=n, p=counts / counts.sum())
    ages = _ages(rng, n)
    # The faces show an *apparent* age: standardised log-age plus noise, which caps the R² any
    # model can reach (about 0.7 on real UTKFace features in the paper's Table 2).
    t = (np.log1p(ages) - 3.3) / 0.6 + age_noise * rng.normal(0.0, 1.0, n)
    centres = rng.normal(0.0, 1.0, (len(counts), dim)) / np.sqrt(dim) * 6.0
    directions = rng.normal(0.0, 1.0, (3, dim)) / np.sqrt(dim) * 4.0
    signal = np.stack([t, np.tanh(2 * t), t**2 - 1], axis=1) @ directions

    held_out = races == len(counts) - 1
    shift = np.where(held_out, rng.random(n), 0.0)
    nearest = np.where(held_out, rng.integers(0, len(counts) - 1, n), races)
    centres[-1] *= ood_distance
    centre = (1 - shift)[:, None] * centres[nearest] + shift[:, None] * centres[races]
    latent = centre + (1 - ood_fade * shift)[:, None] * signal + noise * rng.normal(0.0, 1.0, (n, dim)) / np.sqrt(dim) * 4.0
    features = np.logaddexp(0.0, latent).astype(np.float32)
    return StandIn(features=features, ages=ages, races=races, shift=shift)
