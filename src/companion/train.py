r"""Training many seeds of one network at once: optax, ``lax.scan`` over epochs, ``vmap`` over seeds.

:func:`fit` trains ``len(seeds)`` independent copies of a network on the same data, as one compiled
program: parameters carry a leading seeds axis, the epoch loop is a ``jax.lax.scan``, and the whole
thing is ``jax.vmap``-ed over seeds and ``jax.jit``-ed. Runs are deterministic given the seeds (each
seed fixes the initialisation and, for mini-batches, the shuffling) and the number of seeds trained
together. They equal training each seed on its own only up to floating-point rounding: XLA compiles
a batch of seeds into differently ordered sums, so one epoch differs by about 1e-7 relative (the
test allows 2e-5 after 50 epochs), and long training can amplify that like any change of the last
bit (a few 1e-2 in $R^2$ on far-away inputs after hundreds of epochs). Saved runs therefore record
the seeds trained together, and :func:`companion.artefacts.resume` never mixes batchings in one
folder.

:func:`fit_variants` goes one step further for networks that differ only in where their
parameter-free LayerNorms sit (the paper's "no LN / LN first / LN second / LN every" heads): all
variants share one parameter tree, so variants x seeds runs, each with its own learning rate, are
one ``vmap`` and one compiled program (:class:`companion.models.MLP` takes the LayerNorm positions
as data). It equals calling :func:`fit` once per variant, up to the same rounding (tested).

Both check their input (shapes, NaN, infinity, values too large for the dtype, numbers of the
right kind, including numpy scalars) and their output: a run whose final parameters or training
predictions are not finite raises ``FloatingPointError`` instead of returning a diverged network.

The loss is the mean squared error $\frac{1}{n} \sum_i (f(x_i) - y_i)^2$, PyTorch's ``MSELoss``, which the
paper's experiments use (App. J); its theory uses $\frac{1}{2} \sum_i$, which only rescales the learning
rate of gradient descent. Sequence models train the same way: :func:`fit` fits a module mapping
sequences ``(n, T, 1)`` to ``(n, T, 1)`` (the transformer of :mod:`companion.transformer`) to
targets ``(n, T)``, the error averaged over positions as well.

Networks with BatchNorm (``MLPSpec(norm="batchnorm")``) carry batch statistics besides their
parameters: :func:`fit` trains them with batch statistics (``train=True``), updates the running
averages after every step, and :meth:`TrainResult.predict` evaluates with the running averages,
as PyTorch's ``model.eval()``. With mini-batches the padded last batch repeats a few points in
its statistics.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from companion import progress
from companion.arch import MLPSpec
from companion._train_checks import (
    _as_array,
    _as_model,
    _check_data,
    _check_inputs,
    _check_learning_rate,
    _check_run_arguments,
    _check_runs_per_program,
)
from companion.models import MLP

__all__ = ["TrainResult", "fit", "fit_variants", "make_optimizer"]

#: Number of progress updates per training run (the epoch loop is split into this many scans).
PROGRESS_STEPS = 20


#: Optimisers known by name; each takes the learning rate (a number or a traced scalar).
OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}


def _check_optimizer_name(optimizer: object) -> str:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or an optax.GradientTransformation")
    return str(optimizer)


def make_optimizer(optimizer: str | optax.GradientTransformation, learning_rate: float) -> optax.GradientTransformation:
    """``"adam"`` (the paper's experiments), ``"sgd"`` (plain gradient descent, the theory), or an optax transform."""
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    learning_rate = _check_learning_rate(learning_rate)
    return OPTIMIZERS[_check_optimizer_name(optimizer)](learning_rate)


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
    state:
        Other variable collections (``{"batch_stats": ...}`` for BatchNorm networks, else ``{}``),
        leaves with the same leading seeds axis.
    """

    model: nn.Module
    params: Any
    losses: np.ndarray
    seeds: tuple[int, ...]
    state: Any = dataclasses.field(default_factory=dict)

    def predict(self, x: np.typing.ArrayLike) -> np.ndarray:
        """Predictions of every seed on ``x`` (shape ``(n, d)``), as an array ``(len(seeds), n)``.

        For a sequence model, ``x`` of shape ``(n, T, 1)`` gives ``(len(seeds), n, T)``.
        """
        x = _as_array(x, jax.tree_util.tree_leaves(self.params)[0].dtype, "inputs")
        _check_inputs(self.model, x)
        return np.asarray(_predict(self.model, self.params, self.state, x))


@jax.jit(static_argnums=0)
def _predict(model: nn.Module, params: Any, state: Any, x: jax.Array) -> jax.Array:
    return jax.vmap(lambda p, s: model.apply({"params": p, **s}, x)[..., 0])(params, state)


def _train(
    apply: Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, Any]],
    make_tx: Callable[[Any], optax.GradientTransformation],
    params: Any,
    model_state: Any,
    hypers: Any,
    data_keys: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    epochs: int,
    batch_size: int | None,
    desc: str,
    group: int | None = None,
) -> tuple[Any, np.ndarray]:
    """Train a batch of runs at once: every leaf of ``params``, ``model_state``, ``hypers`` and
    ``data_keys`` has a leading runs axis. ``apply(params, model_state, hyper, x)`` gives training
    predictions ``(n,)`` and the updated model state (batch statistics; pass ``{}`` for none);
    ``make_tx(hyper)`` the run's optimiser. Returns the trained parameters, the final model state
    and the losses ``(runs, epochs)``. With ``group`` smaller than the number of runs, one program
    trains them ``group`` at a time (``jax.lax.map`` over vmapped groups): the same runs, a working
    set of ``group`` runs' activations."""
    n = x.shape[0]
    batch = n if batch_size is None else min(batch_size, n)
    n_batches = -(-n // batch)

    def loss_fn(params: Any, mstate: Any, hyper: Any, xb: jax.Array, yb: jax.Array, wb: jax.Array) -> tuple[jax.Array, Any]:
        pred, mstate = apply(params, mstate, hyper, xb)
        error = (pred - yb) ** 2  # (batch,) or, for sequences, (batch, T)
        return jnp.sum(wb * jnp.mean(error.reshape(error.shape[0], -1), axis=1)) / jnp.sum(wb), mstate

    def step(params: Any, opt_state: Any, mstate: Any, hyper: Any, xb: jax.Array, yb: jax.Array, wb: jax.Array) -> tuple[Any, Any, Any, jax.Array]:
        (loss, mstate), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mstate, hyper, xb, yb, wb)
        updates, opt_state = make_tx(hyper).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, mstate, loss

    def epoch(carry: tuple[Any, Any, Any, jax.Array, Any], index: jax.Array) -> tuple[tuple[Any, Any, Any, jax.Array, Any], jax.Array]:
        params, opt_state, mstate, key, hyper = carry
        if n_batches == 1:
            params, opt_state, mstate, loss = step(params, opt_state, mstate, hyper, x, y, jnp.ones(n, x.dtype))
            return (params, opt_state, mstate, key, hyper), loss
        order = jax.random.permutation(jax.random.fold_in(key, index), n)
        pad = n_batches * batch - n
        order = jnp.concatenate([order, order[:pad]]).reshape(n_batches, batch)
        weights = jnp.concatenate([jnp.ones(n, x.dtype), jnp.zeros(pad, x.dtype)]).reshape(n_batches, batch)

        def batch_step(state: tuple[Any, Any, Any], inputs: tuple[jax.Array, jax.Array]) -> tuple[tuple[Any, Any, Any], jax.Array]:
            idx, w = inputs
            p, s, m, loss = step(*state, hyper, x[idx], y[idx], w)
            return (p, s, m), loss * jnp.sum(w)

        (params, opt_state, mstate), losses = jax.lax.scan(batch_step, (params, opt_state, mstate), (order, weights))
        return (params, opt_state, mstate, key, hyper), jnp.sum(losses) / n

    runs = len(jax.tree_util.tree_leaves(hypers)[0])

    @jax.jit
    def run(state: Any, indices: jax.Array) -> tuple[Any, jax.Array]:
        def one(s: Any) -> tuple[Any, jax.Array]:
            return jax.lax.scan(epoch, s, indices)

        if group is None or group >= runs:
            return jax.vmap(one)(state)
        return jax.lax.map(one, state, batch_size=group)

    opt_state = jax.vmap(lambda p, h: make_tx(h).init(p))(params, hypers)
    state = (params, opt_state, model_state, data_keys, hypers)
    chunk = max(1, -(-epochs // PROGRESS_STEPS))
    losses = []
    with progress.bar(epochs, desc, unit="epoch") as pbar:
        for start in range(0, epochs, chunk):
            indices = jnp.arange(start, min(start + chunk, epochs))
            state, chunk_losses = run(state, indices)
            losses.append(np.asarray(chunk_losses))
            pbar.update(len(indices))
    return state[0], state[2], np.concatenate(losses, axis=1)


def _seed_keys(seeds: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Per seed: the key of the initialisation and the key of the batch order."""
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, dtype=jnp.uint32))
    return jax.vmap(jax.random.split, out_axes=1)(keys)


def _check_finite(loss_curve: np.ndarray, results: Sequence[TrainResult], x: jax.Array, runs: Sequence[str]) -> None:
    """Raise unless every run's recorded losses, final parameters and final training predictions are
    finite (the last recorded loss comes before the last update, which can still diverge)."""
    ok = np.isfinite(loss_curve[:, -1])
    rows = 0
    for result in results:
        n = len(result.seeds)
        leaves = jax.tree_util.tree_leaves(result.params)
        finite_params = np.all([np.asarray(jnp.all(jnp.isfinite(leaf.reshape(n, -1)), axis=1)) for leaf in leaves], axis=0)
        pred = _predict(result.model, result.params, result.state, x).reshape(n, -1)
        ok[rows:rows + n] &= finite_params & np.asarray(jnp.all(jnp.isfinite(pred), axis=1))
        rows += n
    if not np.all(ok):
        bad = [r for r, good in zip(runs, ok) if not good]
        raise FloatingPointError(
            f"training diverged (non-finite loss, weights or predictions) for {', '.join(bad)}; lower the learning rate"
        )


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
    x, y = _check_data(x, y, dtype, module)
    seeds, epochs, batch_size = _check_run_arguments(seeds, epochs, batch_size)
    tx = make_optimizer(optimizer, learning_rate)
    init_keys, data_keys = _seed_keys(seeds)
    variables = jax.vmap(lambda k: dict(module.init(k, x[:1])))(init_keys)
    params = variables.pop("params")
    mutable = sorted(variables)  # e.g. ["batch_stats"] for BatchNorm networks

    def apply(p: Any, mstate: Any, _: Any, xb: jax.Array) -> tuple[jax.Array, Any]:
        if not mutable:
            return module.apply({"params": p}, xb)[..., 0], mstate
        out, updated = module.apply({"params": p, **mstate}, xb, train=True, mutable=mutable)
        return out[..., 0], dict(updated)

    params, model_state, loss_curve = _train(
        apply, lambda _: tx,
        params, variables, jnp.zeros(len(seeds)), data_keys, x, y,
        epochs=epochs, batch_size=batch_size, desc=desc or f"training {len(seeds)} seed(s)",
    )
    result = TrainResult(model=module, params=params, losses=loss_curve, seeds=seeds, state=model_state)
    _check_finite(loss_curve, [result], x, [f"seed {s}" for s in seeds])
    return result


def fit_variants(
    specs: Sequence[MLPSpec],
    x: np.typing.ArrayLike,
    y: np.typing.ArrayLike,
    *,
    seeds: Sequence[int],
    epochs: int,
    learning_rates: float | Sequence[float] = 1e-3,
    optimizer: str = "adam",
    batch_size: int | None = None,
    dtype: Any = jnp.float32,
    desc: str | None = None,
    runs_per_program: int | None = None,
    init_dtype: Any = None,
) -> list[TrainResult]:
    """Train several LayerNorm placements x ``seeds``, each with its own learning rate, at once.

    ``specs`` must differ only in :attr:`~companion.arch.MLPSpec.layernorm` and have parameter-free
    LayerNorms, so that they share one parameter tree (the paper's heads, Sec. 4.3). Seed ``s``
    starts every variant from the same initial weights and the same batch order, exactly as
    ``fit(spec, ..., seeds=[s])`` would. Returns one :class:`TrainResult` per spec, in order;
    the result equals ``[fit(spec, ..., learning_rate=lr) for spec, lr in zip(specs, learning_rates)]``.

    ``runs_per_program`` runs are vmapped together, the groups one after another in the same compiled
    program; the results equal one group of all runs up to float rounding. ``None`` (default) picks
    a small group on a CPU, where all runs' activations together do not fit the caches and one
    vmap of every run is memory-bound, and all runs at once on an accelerator.

    ``init_dtype`` draws the initial weights in that dtype and then casts them to ``dtype``
    (default: drawn in ``dtype``). The random draws depend on the dtype, so
    ``dtype=jnp.float64, init_dtype=jnp.float32`` (with JAX's 64-bit mode on) trains the very networks
    of a float32 run again in float64: what differs is the arithmetic of training alone.
    """
    specs = list(specs)
    if not specs or not all(isinstance(s, MLPSpec) for s in specs):
        raise ValueError("specs must be a non-empty sequence of MLPSpec")
    base = specs[0].replace(layernorm=frozenset())
    for spec in specs:
        if spec.replace(layernorm=frozenset()) != base:
            raise ValueError(f"variants may differ only in their LayerNorm positions; {spec} differs from {specs[0]}")
        if spec.ln_affine:
            raise ValueError("fit_variants needs parameter-free LayerNorms (ln_affine=False)")
        if spec.norm != "layernorm":
            raise ValueError("fit_variants trains LayerNorm placements; train BatchNorm networks with fit")
    rates = [learning_rates] * len(specs) if isinstance(learning_rates, numbers.Real) else list(learning_rates)
    if len(rates) != len(specs):
        raise ValueError(f"give one learning rate per variant: {len(specs)} variants, {len(rates)} learning rates")
    rates = [_check_learning_rate(r) for r in rates]
    make = OPTIMIZERS[_check_optimizer_name(optimizer)]
    module = MLP(base)
    x, y = _check_data(x, y, dtype)
    seeds, epochs, batch_size = _check_run_arguments(seeds, epochs, batch_size)
    n_seeds, n_variants = len(seeds), len(specs)
    group = _check_runs_per_program(runs_per_program, n_seeds * n_variants, jax.default_backend())

    # Runs are ordered variant-major: run v * n_seeds + s is variant v with seed s.
    masks = jnp.asarray([[h in spec.layernorm for h in range(1, base.depth + 1)] for spec in specs])
    hypers = {
        "ln_mask": jnp.repeat(masks, n_seeds, axis=0),
        "learning_rate": jnp.repeat(jnp.asarray(rates, dtype=dtype), n_seeds),
    }
    init_keys, data_keys = _seed_keys(seeds)
    first = x[:1] if init_dtype is None else x[:1].astype(init_dtype)
    params = jax.vmap(lambda k: module.init(k, first)["params"])(init_keys)
    if init_dtype is not None:
        params = jax.tree_util.tree_map(lambda leaf: leaf.astype(x.dtype), params)
    params = jax.tree_util.tree_map(lambda leaf: jnp.tile(leaf, (n_variants,) + (1,) * (leaf.ndim - 1)), params)
    data_keys = jnp.tile(data_keys, n_variants)
    params, _, loss_curve = _train(
        lambda p, m, h, xb: (module.apply({"params": p}, xb, ln_mask=h["ln_mask"])[:, 0], m),
        lambda h: make(h["learning_rate"]),
        params, {}, hypers, data_keys, x, y,
        epochs=epochs, batch_size=batch_size,
        desc=desc or f"training {n_variants} variants x {n_seeds} seed(s)", group=group,
    )
    results = []
    for v, spec in enumerate(specs):
        rows = slice(v * n_seeds, (v + 1) * n_seeds)
        results.append(TrainResult(
            model=MLP(spec),
            params=jax.tree_util.tree_map(lambda leaf: leaf[rows], params),
            losses=loss_curve[rows],
            seeds=seeds,
        ))
    _check_finite(loss_curve, results, x, [f"{spec.label} seed {s}" for spec in specs for s in seeds])
    return results
