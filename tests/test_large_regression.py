"""companion.kernels.large: the one-matrix NTK regression agrees with the dense one, factorises in
place, and its ensemble moments are neural-tangents' gradient-descent ensemble at t = infinity."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from companion.arch import MLPSpec
from companion.kernels import kernel, large, ntk_regression, stax_model

SPECS = [MLPSpec(depth=2), MLPSpec(depth=2, layernorm="first"), MLPSpec(depth=2, layernorm="every")]


def _data(n: int = 90, n_test: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    y = np.sin(x[:, 0]) + 0.3 * x[:, 1] + 0.1 * rng.standard_normal(n)
    return x, y, 4 * rng.standard_normal((n_test, 5))  # test points far out, where the models differ


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label)
def test_equals_dense_regression(spec: MLPSpec) -> None:
    x, y, xt = _data()
    dense = ntk_regression(x, y, xt, spec, jitter=1e-9)
    scale = float(np.mean(np.diag(kernel(x, None, spec).ntk)))
    # Block size 32: several row and column blocks, a ragged last one, diagonal and off-diagonal.
    ours = large.large_ntk_regression(x, y, {"t": xt, "train": x}, spec, relative_jitter=1e-9 / scale, block_size=32)
    np.testing.assert_allclose(ours.means["t"], dense.mean, rtol=1e-7, atol=1e-9 * np.abs(dense.mean).max())
    np.testing.assert_allclose(ours.alpha, dense.alpha, rtol=1e-6, atol=1e-8 * np.abs(dense.alpha).max())
    np.testing.assert_allclose(ours.means["train"], y, atol=1e-5)  # it interpolates
    assert ours.jitter == pytest.approx(1e-9)


def test_gram_upper_is_the_kernel_and_in_fortran_order() -> None:
    x, _, _ = _data(70)
    gram = large.gram_upper(x, SPECS[1], block_size=16)
    full = kernel(x, None, SPECS[1]).ntk
    assert gram.flags.f_contiguous
    upper = np.triu_indices(len(x))
    np.testing.assert_allclose(gram[upper], full[upper], rtol=1e-12)


def test_factorises_in_place_and_reports_failure() -> None:
    x, y, _ = _data(60)
    gram = large.gram_upper(x, SPECS[0])
    address = gram.__array_interface__["data"][0]
    assert large.factorise_in_place(gram, 0.0, block_size=16)  # 4 blocks, a ragged last one
    assert gram.__array_interface__["data"][0] == address
    dense = kernel(x, None, SPECS[0]).ntk
    reference = np.linalg.cholesky(dense).T
    np.testing.assert_allclose(np.triu(gram), reference, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(large.solve_factored(gram, y, block_size=16), np.linalg.solve(dense, y), rtol=1e-6)
    repeated = np.concatenate([x, x[:3]])  # repeated inputs: singular without jitter
    assert not large.factorise_in_place(large.gram_upper(repeated, SPECS[0]), 0.0)
    with pytest.raises(ValueError, match="Fortran-ordered"):
        large.factorise_in_place(np.eye(3), 0.0)


def test_ladder_finds_a_jitter_for_repeated_inputs_and_rejects_bad_input() -> None:
    x, y, xt = _data(50)
    xr, yr = np.concatenate([x, x[:2]]), np.concatenate([y, y[:2] + 1.0])
    result = large.large_ntk_regression(xr, yr, {"t": xt}, SPECS[1])
    assert result.relative_jitter > 0
    assert np.all(np.isfinite(result.means["t"]))
    with pytest.raises(ValueError, match="finite targets"):
        large.large_ntk_regression(x, np.full(50, np.nan), {"t": xt}, SPECS[1])
    with pytest.raises(ValueError, match="relative_jitter"):
        large.large_ntk_regression(x, y, {"t": xt}, SPECS[1], relative_jitter=-1.0)


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: s.label)
def test_ensemble_moments_match_neural_tangents(spec: MLPSpec) -> None:
    from companion.nt import nt

    x, y, xt = _data(40, 12)
    mean, cov = large.ensemble_moments(x, y, xt, spec)
    _, _, kernel_fn = stax_model(spec)
    with jax.enable_x64(True):
        predict = nt.predict.gradient_descent_mse_ensemble(kernel_fn, jax.numpy.asarray(x), jax.numpy.asarray(y[:, None]))
        reference = predict(t=None, x_test=jax.numpy.asarray(xt), get="ntk", compute_cov=True)
    np.testing.assert_allclose(mean, np.asarray(reference.mean)[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cov, np.asarray(reference.covariance), rtol=1e-4, atol=1e-6 * np.abs(cov).max())
    assert np.all(np.linalg.eigvalsh(cov) > -1e-8 * np.abs(cov).max())


def test_peak_memory_is_reported() -> None:
    assert large.peak_memory_bytes() > 10_000_000
