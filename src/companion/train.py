"""Training many seeds of one network at once: optax, ``lax.scan`` over epochs, ``vmap`` over seeds.

:func:`fit` trains ``len(seeds)`` independent copies of a network on the same data, as one compiled
program: parameters carry a leading seeds axis, the epoch loop is a ``jax.lax.scan``, and the whole
thing is ``jax.vmap``-ed over seeds and ``jax.jit``-ed. Runs are deterministic given the seeds (each
seed fixes the initialisation and, for mini-batches, the shuffling) and identical to training each
seed on its own (tested).

The loss is the mean squared error ``mean_i (f(x_i) - y_i)^2``, PyTorch's ``MSELoss``, which the
paper's experiments use (App. J); its theory uses ``1/2 sum_i``, which only rescales the learning
rate of gradient descent. Sequence models train the same way: a module mapping sequences
``(n, T, 1)`` to ``(n, T, 1)`` (the transformer of :mod:`companion.transformer`) is fitted to
targets ``(n, T)``, the error averaged over positions as well.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from companion import progress
from companion.arch import MLPSpec
from companion.models import MLP, check_inputs

__all__ = ["TrainResult", "fit", "make_optimizer"]

#: Number of progress updates per training run (the epoch loop is split into this many scans).
PROGRESS_STEPS = 20


def make_optimizer(optimizer: str | optax.GradientTransformation, learning_rate: float) -> optax.GradientTransformation:
    """``"adam"`` (the paper's experiments), ``"sgd"`` (plain gradient descent, the theory), or an optax transform."""
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    if optimizer == "adam":
        return optax.adam(learning_rate)
    if optimizer == "sgd":
        return optax.sgd(learning_rate)
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or an optax.GradientTransformation")


@dataclasses.dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model:
        The flax module that was trained.
    params:
        Trained parameters; every leaf has a leading axis of length ``len(seeds)``.
    losses:
        Training loss per epoch, shape ``(len(seeds), epochs)`` (mean over the epoch's batches;
        for full batch, the loss before that epoch's update).
    seeds:
        The seeds, in the order of the leading axis.
    """

    model: nn.Module
    params: Any
    losses: np.ndarray
    seeds: tuple[int, ...]

    def predict(self, x: np.typing.ArrayLike) -> np.ndarray:
        """Predictions of every seed on ``x`` (shape ``(n, d)``), as an array ``(len(seeds), n)``.

        For a sequence model, ``x`` of shape ``(n, T, 1)`` gives ``(len(seeds), n, T)``.
        """
        x = jnp.asarray(x, dtype=jax.tree_util.tree_leaves(self.params)[0].dtype)
        _check_inputs(self.model, x)
        return np.asarray(_predict(self.model, self.params, x))


@jax.jit(static_argnums=0)
def _predict(model: nn.Module, params: Any, x: jax.Array) -> jax.Array:
    return jax.vmap(lambda p: model.apply({"params": p}, x)[..., 0])(params)


def _check_inputs(module: nn.Module, x: jax.Array) -> None:
    """MLPs take ``(n, d)``; other modules take any ``(n, ...)`` and check the rest themselves."""
    if isinstance(module, MLP) or getattr(x, "ndim", 0) < 2:
        check_inputs(x)


def _as_model(model: MLPSpec | nn.Module) -> nn.Module:
    if isinstance(model, MLPSpec):
        return MLP(model)
    if isinstance(model, nn.Module):
        return model
    raise TypeError(f"expected an MLPSpec or a flax module, got {type(model).__name__}")


def _check_data(
    module: nn.Module, x: np.typing.ArrayLike, y: np.typing.ArrayLike, dtype: Any
) -> tuple[jax.Array, jax.Array]:
    x = jnp.asarray(x, dtype=dtype)
    y = jnp.asarray(y, dtype=dtype)
    _check_inputs(module, x)
    if x.ndim == 2 and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != x.shape[:-1]:
        raise ValueError(
            f"targets must have shape {x.shape[:-1]} to match {x.shape[0]} inputs, got {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("cannot train on an empty data set")
    if not (bool(jnp.all(jnp.isfinite(x))) and bool(jnp.all(jnp.isfinite(y)))):
        raise ValueError("training data contain NaN or infinity; clean or drop those rows first")
    return x, y


def fit(
    model: MLPSpec | nn.Module,
    x: np.typing.ArrayLike,
    y: np.typing.ArrayLike,
    *,
    seeds: Sequence[int],
    epochs: int,
    learning_rate: float = 1e-3,
    optimizer: str | optax.GradientTransformation = "adam",
    batch_size: int | None = None,
    dtype: Any = jnp.float32,
    desc: str | None = None,
) -> TrainResult:
    """Train one network per seed on ``(x, y)`` with MSE, all seeds at once.

    Parameters
    ----------
    model:
        An :class:`~companion.arch.MLPSpec` (built with :class:`~companion.models.MLP`) or any flax
        module mapping ``(n, d)`` to ``(n, 1)``, or ``(n, T, d)`` to ``(n, T, 1)`` for sequences.
    x, y:
        Inputs ``(n, d)`` and targets ``(n,)``, or sequences ``(n, T, d)`` and targets ``(n, T)``
        (the loss then averages over positions too).
    seeds:
        One independent run per seed; the seed fixes initialisation and batch order.
    epochs:
        Passes over the data. With ``batch_size=None`` (full batch) one epoch is one update.
    batch_size:
        Mini-batch size; the data are reshuffled every epoch and the last, smaller batch is kept
        (PyTorch's ``DataLoader`` default, ``drop_last=False``).
    """
    module = _as_model(model)
    x, y = _check_data(module, x, y, dtype)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    n = x.shape[0]
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None (full batch), got {batch_size!r}")
    batch = n if batch_size is None else min(batch_size, n)
    n_batches = -(-n // batch)
    tx = make_optimizer(optimizer, learning_rate)

    def loss_fn(params: Any, xb: jax.Array, yb: jax.Array, wb: jax.Array) -> jax.Array:
        pred = module.apply({"params": params}, xb)[..., 0]
        error = jnp.mean(((pred - yb) ** 2).reshape(pred.shape[0], -1), axis=1)
        return jnp.sum(wb * error) / jnp.sum(wb)

    def step(params: Any, opt_state: Any, xb: jax.Array, yb: jax.Array, wb: jax.Array) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb, wb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def epoch(carry: tuple[Any, Any, jax.Array], index: jax.Array) -> tuple[tuple[Any, Any, jax.Array], jax.Array]:
        params, opt_state, key = carry
        if n_batches == 1:
            params, opt_state, loss = step(params, opt_state, x, y, jnp.ones(n, x.dtype))
            return (params, opt_state, key), loss
        order = jax.random.permutation(jax.random.fold_in(key, index), n)
        pad = n_batches * batch - n
        order = jnp.concatenate([order, order[:pad]]).reshape(n_batches, batch)
        weights = jnp.concatenate([jnp.ones(n, x.dtype), jnp.zeros(pad, x.dtype)]).reshape(n_batches, batch)

        def batch_step(state: tuple[Any, Any], inputs: tuple[jax.Array, jax.Array]) -> tuple[tuple[Any, Any], jax.Array]:
            idx, w = inputs
            p, s, loss = step(*state, x[idx], y[idx], w)
            return (p, s), loss * jnp.sum(w)

        (params, opt_state), losses = jax.lax.scan(batch_step, (params, opt_state), (order, weights))
        return (params, opt_state, key), jnp.sum(losses) / n

    @jax.jit
    def run(state: Any, indices: jax.Array) -> tuple[Any, jax.Array]:
        return jax.vmap(lambda s: jax.lax.scan(epoch, s, indices))(state)

    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, dtype=jnp.uint32))
    init_keys, data_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    params = jax.vmap(lambda k: module.init(k, x[:1])["params"])(init_keys)
    state = (params, jax.vmap(tx.init)(params), data_keys)

    chunk = max(1, -(-epochs // PROGRESS_STEPS))
    losses = []
    with progress.bar(epochs, desc or f"training {len(seeds)} seed(s)", unit="epoch") as pbar:
        for start in range(0, epochs, chunk):
            indices = jnp.arange(start, min(start + chunk, epochs))
            state, chunk_losses = run(state, indices)
            losses.append(np.asarray(chunk_losses))
            pbar.update(len(indices))
    loss_curve = np.concatenate(losses, axis=1)
    if not np.all(np.isfinite(loss_curve[:, -1])):
        bad = [s for s, l in zip(seeds, loss_curve[:, -1]) if not np.isfinite(l)]
        raise FloatingPointError(f"training diverged (non-finite loss) for seed(s) {bad}; lower the learning rate")
    return TrainResult(model=module, params=state[0], losses=loss_curve, seeds=seeds)
