"""How :func:`~companion.kernels.recursion.kernel` lays out its work: blocks, tiles, devices and memory.

A kernel matrix is evaluated in blocks of at most ``block_size`` rows and columns, spread over every
device JAX sees, each block as one program over its ``TILE x TILE`` tiles (all tiles vmapped, so
each layer is one vectorised pass) and, for ``kernel(x, None)``, only the tiles on and above the
diagonal; :func:`place` writes a block's tiles into the NumPy results on the host (and mirrors
them). Row counts are padded to a few sizes so that repeated calls reuse compiled programs, and
a result that cannot fit in the host's memory is refused before any work.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from companion.kernels.inputs import overflow_error

__all__ = ["DEFAULT_BLOCK_SIZE", "TILE", "Block", "padded_rows", "tile_size", "pad_rows", "devices", "check_memory",
           "block_grid", "place", "rowwise"]

#: Rows and columns per compiled evaluation of :func:`~companion.kernels.recursion.kernel` ($4096^2$ pairs: 128 MiB per float64
#: matrix); larger inputs are processed block by block.
DEFAULT_BLOCK_SIZE = 4096

#: Rows and columns of the tiles within a block (the unit of the symmetric half of ``kernel(x, None)``).
TILE = 256


def padded_rows(n: int) -> int:
    """Pad ``n`` rows to a few sizes (a multiple of :data:`TILE`) so that repeated calls reuse compiled programs."""
    return -(-n // TILE) * TILE if n > TILE else max(64, 1 << (n - 1).bit_length())


def tile_size(padded: int) -> int:
    """Rows of the tiles of a block of ``padded`` rows: :data:`TILE`, or the whole block when smaller."""
    return TILE if padded % TILE == 0 else padded


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """``x`` with copies of its first row appended up to ``rows`` rows."""
    if x.shape[0] == rows:
        return x
    return np.concatenate([x, np.repeat(x[:1], rows - x.shape[0], axis=0)])


def devices() -> list[jax.Device]:
    """The devices the kernels spread their work over: every device of JAX's default backend."""
    return jax.devices()


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def check_memory(n1: int, n2: int, block: int, dt: np.dtype, n_devices: int, free: int | None) -> None:
    """Refuse, naming the memory needed, a result that cannot fit in ``free`` bytes (``None``: unknown, no check)."""
    result = 2 * n1 * n2 * dt.itemsize
    in_flight = 0 if n1 <= block and n2 <= block else n_devices * 2 * min(n1, block) * min(n2, block) * dt.itemsize
    # a single block is computed in place and copied once into the (writable) result
    needed = result + (result if n1 <= block and n2 <= block else in_flight)
    if free is not None and needed > free:
        raise MemoryError(
            f"kernel of {n1:,} x {n2:,} points in {dt.name} needs about {_gib(needed)} of memory "
            f"(two {n1:,} x {n2:,} result matrices of {_gib(result / 2)} each, plus the blocks being "
            f"computed) but only {_gib(free)} is available; use fewer points, dtype=float32, a smaller "
            f"block_size, or only the entries you need (kernel_diag, kernel_pairs, or kernel on blocks of rows)"
        )


def block_grid(n: int, block: int) -> list[tuple[int, int, int]]:
    """``(start, rows, padded rows)`` of the blocks of ``n`` rows with at most ``block`` each."""
    return [(i, min(block, n - i), padded_rows(min(block, n - i))) for i in range(0, n, block)]


class Block(NamedTuple):
    """One dispatched block: its packed tiles (still computing, asynchronously) and where they go."""

    packed: jax.Array
    finite: jax.Array
    rows: np.ndarray
    cols: np.ndarray
    tiles: tuple[int, int]
    mirror: bool


def place(out: np.ndarray, tiles: np.ndarray, block: Block, at: tuple[int, int], size: tuple[int, int],
           transpose_too: bool) -> None:
    """Write one part of a block's tiles (``packed.real`` or ``packed.imag``) into ``out[at[0]:, at[1]:]``,
    cropped to ``size`` (the rows and columns before padding); ``transpose_too``: also write the
    block's transpose at ``out[at[1]:, at[0]:]`` (an off-diagonal block of a symmetric result).

    A mirrored block holds the tiles on and above the diagonal in row-major order, so each row of
    tiles is one band: it is written with one assignment, its transpose below the diagonal with
    another, and in the diagonal tile the upper triangle is copied onto the lower one. The result
    is exactly symmetric, from about half the pairs.
    """
    (i, j), (m, k), (t1, t2) = at, size, block.tiles
    if not block.mirror:  # every tile, in row-major order: one reshape
        grid = tiles.reshape(-1, int(block.cols.max()) + 1, t1, t2)
        out[i: i + m, j: j + k] = grid.transpose(0, 2, 1, 3).reshape(grid.shape[0] * t1, grid.shape[1] * t2)[:m, :k]
        if transpose_too:
            out[j: j + k, i: i + m] = out[i: i + m, j: j + k].T
        return
    start, grid = 0, int(block.rows.max()) + 1
    for r in range(grid):
        count = grid - r  # tiles (r, r), ..., (r, grid - 1)
        r0 = r * t1
        if r0 < m:
            h = min(t1, m - r0)
            band = tiles[start: start + count].transpose(1, 0, 2).reshape(t1, count * t1)[:h, : m - r0]
            out[i + r0: i + m, j + r0: j + r0 + h] = band.T
            out[i + r0: i + r0 + h, j + r0: j + m] = band
            square = out[i + r0: i + r0 + h, j + r0: j + r0 + h]
            # a masked copy, not fancy indexing: NumPy releases the GIL for it (place runs in threads)
            np.copyto(square, square.T, where=np.tri(h, k=-1, dtype=bool))
        start += count


def rowwise(program: Callable, arrays: list[np.ndarray], arch: Hashable, dt: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``program(*arrays, arch)``, a compiled function of matching rows, with the rows padded and
    sharded over every device (:func:`devices`); a clear error if the result overflows ``dt``."""
    pool = devices()
    n = arrays[0].shape[0]
    padded = padded_rows(n)
    padded = -(-padded // len(pool)) * len(pool)
    sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(pool), ("rows",)),
                                          jax.sharding.PartitionSpec("rows"))
    with jax.enable_x64(dt == np.float64):
        inputs = [jax.device_put(jnp.asarray(pad_rows(x, padded), dt), sharding) for x in arrays]
        nngp, ntk = program(*inputs, arch)
        nngp, ntk = np.array(nngp)[:n], np.array(ntk)[:n]
    if not (np.all(np.isfinite(nngp)) and np.all(np.isfinite(ntk))):
        raise overflow_error(dt, *arrays)
    return nngp, ntk
