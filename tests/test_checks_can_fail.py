"""Every theory chapter's checks can fail: break the kernels on purpose, one fault at a time.

Each theory chapter's last cell calls ``checks()`` of its experiment module. Here those functions
run (at small sizes) on the intact kernels, where they must pass, and under each fault below,
injected by replacing one step of :mod:`companion.kernels.recursion` or one entry of
:data:`companion.kernels.duals.DUALS`. The test asserts that every fault is caught by at least one
chapter and that every chapter catches at least one fault: a chapter whose checks pass whatever
the kernels compute would check nothing.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import pytest

from companion.experiments import beyond_relu, bounded_kernel, explosion, ntk_background, output_bound
from companion.kernels import duals, recursion

#: Each theory chapter's checks at small sizes (the same claims and tolerances as the chapter).
CHAPTERS: dict[str, Callable[[], object]] = {
    "ntk-background": lambda: ntk_background.checks(),
    "explosion": lambda: explosion.checks(
        dataclasses.replace(explosion.config("ci"), n_lambdas=25, grid_points=201, depths=(2,))),
    "bounded-kernel": lambda: bounded_kernel.checks(
        dataclasses.replace(bounded_kernel.config("ci"), norm_points=81, pairs=64, heat_points=21)),
    "output-bound": lambda: output_bound.checks(
        dataclasses.replace(output_bound.config("ci"), n_1d=12, n_nd=12, directions=8, radii=13)),
    "beyond-relu": lambda: beyond_relu.checks(
        dataclasses.replace(beyond_relu.config("ci"), n_train=6, n_scales=13, activations=("relu", "gelu", "tanh"))),
}


def _arch_argument(args: tuple, kwargs: dict) -> tuple[str | int, object]:
    """Where the architecture (the object with ``layernorm`` and ``depth``) is among the arguments."""
    for key, value in kwargs.items():
        if hasattr(value, "layernorm") and hasattr(value, "depth"):
            return key, value
    for i, value in enumerate(args):
        if hasattr(value, "layernorm") and hasattr(value, "depth"):
            return i, value
    raise AssertionError("the recursion's _propagate no longer receives the architecture")


def _with_arch(fn: Callable, change: Callable[[object], object]) -> Callable:
    """``fn`` called with its architecture argument replaced by ``change(arch)``."""

    def wrapped(*args, **kwargs):
        where, arch = _arch_argument(args, kwargs)
        if isinstance(where, str):
            kwargs = {**kwargs, where: change(arch)}
        else:
            args = args[:where] + (change(arch),) + args[where + 1:]
        return fn(*args, **kwargs)

    return wrapped


def _drop_layernorm(mp: pytest.MonkeyPatch) -> None:
    """The recursion forgets every LayerNorm."""
    mp.setattr(recursion, "_propagate", _with_arch(recursion._propagate, lambda a: dataclasses.replace(a, layernorm=())))


def _move_layernorm(mp: pytest.MonkeyPatch) -> None:
    """Every LayerNorm acts one layer later than the architecture says (the last one moves to the first)."""

    def move(a):
        return dataclasses.replace(a, layernorm=tuple(sorted(h % a.depth + 1 for h in a.layernorm)))

    mp.setattr(recursion, "_propagate", _with_arch(recursion._propagate, move))


def _no_relu_derivative(mp: pytest.MonkeyPatch) -> None:
    """ReLU's derivative term ``E[phi'(u) phi'(v)]`` is dropped, so the NTK loses its backward part."""
    relu = duals.DUALS["relu"]

    def broken(s1, s2, rho):
        t, tdot = relu(s1, s2, rho)
        return t, jnp.zeros_like(tdot)

    mp.setitem(duals.DUALS, "relu", broken)


def _growing_layernorm_diagonal(mp: pytest.MonkeyPatch) -> None:
    """With a LayerNorm, the NTK keeps a factor of the first layer's standard deviations, so it grows with |x|."""
    original = recursion._propagate
    names = list(inspect.signature(original).parameters)

    def broken(*args, **kwargs):
        bound = dict(zip(names, args)) | kwargs
        nngp, ntk = original(*args, **kwargs)
        _, arch = _arch_argument(args, kwargs)
        if not arch.layernorm:
            return nngp, ntk
        q1, q2 = bound.get("q1", args[0]), bound.get("q2", args[1])
        return nngp, ntk * jnp.sqrt(1 + jnp.sqrt(q1 * q2))

    mp.setattr(recursion, "_propagate", broken)


def _perturbed_correlation(mp: pytest.MonkeyPatch) -> None:
    """Every correlation (after a first-layer LayerNorm: the soft-cosine) is off by up to 1%, +-1 kept."""
    original = recursion._correlation

    def broken(*args, **kwargs):
        rho = original(*args, **kwargs)
        return rho + 0.02 * (1 - rho**2)

    mp.setattr(recursion, "_correlation", broken)


def _no_first_layer_bias(mp: pytest.MonkeyPatch) -> None:
    """The first layer's bias variance is left out of its covariances."""
    original = recursion._first_layer

    def broken(x1, x2, arch, *rest, **kwargs):
        q1, q2, c = original(x1, x2, arch, *rest, **kwargs)
        b2 = arch.sigma_b**2
        return q1 - b2, q2 - b2, c - b2

    mp.setattr(recursion, "_first_layer", broken)


FAULTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "drop the LayerNorm": _drop_layernorm,
    "move the LayerNorm one layer on": _move_layernorm,
    "remove the ReLU derivative term": _no_relu_derivative,
    "LayerNorm diagonal grows with the norm": _growing_layernorm_diagonal,
    "perturb the soft-cosine": _perturbed_correlation,
    "drop the first layer's bias": _no_first_layer_bias,
}


def _run_chapters() -> dict[str, str | None]:
    """Each chapter's outcome: ``None`` if its checks pass, else the failure's first line."""
    jax.clear_caches()  # compiled kernels must be rebuilt with the (un)patched steps
    outcome = {}
    for name, run in CHAPTERS.items():
        try:
            run()
        except AssertionError as error:
            outcome[name] = f"AssertionError: {str(error).splitlines()[0] if str(error) else ''}"
        except Exception as error:  # a fault may also stop a computation with a clear error (e.g. a
            # Gram matrix that is no longer positive definite): the chapter fails as well
            outcome[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        else:
            outcome[name] = None
    return outcome


@pytest.fixture(scope="module")
def matrix() -> Iterator[dict[str | None, dict[str, str | None]]]:
    """Outcomes without a fault (key ``None``) and under each fault."""
    results: dict[str | None, dict[str, str | None]] = {None: _run_chapters()}
    for fault, inject in FAULTS.items():
        with pytest.MonkeyPatch.context() as mp:
            inject(mp)
            results[fault] = _run_chapters()
    jax.clear_caches()
    print("\n" + "\n".join(f"{fault}: {outcome}" for fault, outcome in results.items()))
    yield results


def test_every_chapter_passes_on_the_intact_kernels(matrix) -> None:
    failures = {name: why for name, why in matrix[None].items() if why is not None}
    assert not failures, f"checks fail without any fault: {failures}"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_fault_is_caught(matrix, fault: str) -> None:
    caught = [name for name, why in matrix[fault].items() if why is not None]
    assert caught, f"no chapter's checks notice the fault {fault!r}"


@pytest.mark.parametrize("chapter", list(CHAPTERS))
def test_every_chapter_catches_a_fault(matrix, chapter: str) -> None:
    caught = [fault for fault in FAULTS if matrix[fault][chapter] is not None]
    assert caught, f"chapter {chapter!r}: its checks pass under every fault, so they check nothing"

