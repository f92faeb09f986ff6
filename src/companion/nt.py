"""The project's only door to neural-tangents.

neural-tangents 0.6.5 (Dec 2023) is the last release. Two things stop it from importing on the JAX
this book uses, and this module fixes both before importing it:

1. **JAX moved names out of its public modules.** Since jax 0.6 ``jax.core.Jaxpr`` and friends,
   since 0.7 ``jax.util.safe_map``/``safe_zip`` (and since 0.8 the whole ``jax.util`` module), and a
   few names of ``jax.interpreters.ad`` are gone; every one still exists under ``jax._src``. We add
   *only the names that are missing*, taken from where JAX keeps them now, so nothing changes on a
   JAX that still has them. Three names have no private home on new JAX; neural-tangents uses them
   only under ``jax_enable_checks`` (``lattice_join``), in ``type(x) is ...`` tests
   (``DShapedArray``) or as a rule-table key (``zeros_like_p``), so inert stand-ins are safe.
2. **Its ``experimental`` module imports TensorFlow**, which neural-tangents' metadata pulls in
   (about 2 GB) for the TF-to-JAX bridge alone. We install it with ``pip install --no-deps`` and
   register a stub for that module: calling the bridge raises :class:`ImportError` that says so.

Use it as::

    from companion.nt import nt, stax

Everything else of neural-tangents (``stax`` kernels, ``empirical_ntk_fn``, ``predict``, ``batch``,
``monte_carlo_kernel_fn``) works unchanged on jax 0.5.3–0.9.2; on jax 0.10+
``empirical_ntk_fn(implementation=3)`` breaks for good, which is why the book computes empirical
NTKs with JAX's own transforms (:func:`companion.kernels.empirical_ntk_fn`) and keeps
neural-tangents as the independent reference. :func:`nt_self_check` runs every neural-tangents
path the book uses and checks each against a closed form or against the book's own code
(``python -m companion doctor`` calls it).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from typing import Any

__all__ = ["nt", "stax", "NT_VERSION_TESTED", "patched_names", "nt_self_check"]

NT_VERSION_TESTED = "0.6.5"

INSTALL_HINT = (
    "install it without its TensorFlow dependencies: "
    "pip install --no-deps neural-tangents==0.6.5 frozendict"
)

#: DeprecationWarnings that neural-tangents' code triggers inside JAX on the pinned version
#: (attributed to JAX's modules, so a module filter cannot catch them). pyproject.toml's pytest
#: configuration lists the same messages.
KNOWN_DEPRECATIONS = (
    r"linear_util\.wrap_init is missing a DebugInfo",
    r"Implicit conversion of an array to a dtype is deprecated",
)

#: (public module, name) -> list of (private module, attribute) where JAX keeps it now.
_RELOCATED: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("jax.core", "Jaxpr"): [("jax._src.core", "Jaxpr")],
    ("jax.core", "JaxprEqn"): [("jax._src.core", "JaxprEqn")],
    ("jax.core", "Literal"): [("jax._src.core", "Literal")],
    ("jax.core", "Var"): [("jax._src.core", "Var")],
    ("jax.core", "Primitive"): [("jax._src.core", "Primitive")],
    ("jax.core", "ShapedArray"): [("jax._src.core", "ShapedArray")],
    ("jax.core", "Value"): [("jax._src.core", "Value")],
    ("jax.core", "AbstractValue"): [("jax._src.core", "AbstractValue")],
    ("jax.core", "eval_context"): [("jax._src.core", "eval_context")],
    ("jax.core", "lattice_join"): [("jax._src.core", "lattice_join")],
    ("jax.core", "DShapedArray"): [("jax._src.core", "DShapedArray")],
    ("jax.core", "get_aval"): [("jax._src.core", "get_aval"), ("jax", "typeof")],
    ("jax.interpreters.ad", "source_info_util"): [("jax._src", "source_info_util")],
    ("jax.interpreters.ad", "config"): [("jax._src.config", "config")],
    ("jax.interpreters.ad", "zeros_like_p"): [
        ("jax._src.interpreters.ad", "zeros_like_p"),
        ("jax._src.ad_util", "zeros_like_p"),
    ],
    ("jax.interpreters.ad", "backward_pass"): [("jax._src.interpreters.ad", "backward_pass")],
    ("jax.interpreters.ad", "reducing_transposes"): [
        ("jax._src.interpreters.ad", "reducing_transposes")
    ],
    ("jax.util", "safe_map"): [("jax._src.util", "safe_map")],
    ("jax.util", "safe_zip"): [("jax._src.util", "safe_zip")],
}


class _AbsentDShapedArray:
    """Stand-in for ``jax.core.DShapedArray`` on JAX versions without dynamic shapes.

    neural-tangents only tests ``type(x) is core.DShapedArray``; no value is ever of this type.
    """


def _lattice_join_fallback(a: Any, b: Any) -> Any:
    """Stand-in for ``jax.core.lattice_join`` (used by neural-tangents only under jax_enable_checks)."""
    return a


def _fallback(module: str, name: str) -> Any:
    if name == "DShapedArray":
        return _AbsentDShapedArray
    if name == "lattice_join":
        return _lattice_join_fallback
    if name == "zeros_like_p":
        from jax.extend.core import Primitive

        return Primitive("zeros_like")  # only a dictionary key in neural-tangents' rule tables
    raise ImportError(
        f"neural-tangents needs {module}.{name}, which this JAX no longer provides anywhere; "
        f"use the pinned jax==0.9.2 from requirements.lock"
    )


#: What ``_install_shim()`` had to add on this JAX, as ``"module.name"`` strings.
patched_names: list[str] = []


def _has(module: types.ModuleType, name: str) -> bool:
    # JAX serves deprecated names through a module __getattr__ that warns; probe quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            getattr(module, name)
        except AttributeError:
            return False
    return True


def _public_module(name: str) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    if importlib.util.find_spec(name) is not None:
        return importlib.import_module(name)
    # jax>=0.8 removed jax.util entirely: recreate an empty module for the relocated names.
    module = types.ModuleType(name, f"Compatibility module created by {__name__}.")
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    setattr(importlib.import_module(parent), child, module)
    return module


def _locate(candidates: list[tuple[str, str]]) -> Any:
    for module_name, attr in candidates:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if _has(module, attr):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return getattr(module, attr)
    return None


def _install_shim() -> None:
    for (module_name, name), candidates in _RELOCATED.items():
        module = _public_module(module_name)
        if _has(module, name):
            continue
        value = _locate(candidates)
        if value is None:
            value = _fallback(module_name, name)
        setattr(module, name, value)
        patched_names.append(f"{module_name}.{name}")


def _tensorflow_bridge(*args: Any, **kwargs: Any) -> Any:
    raise ImportError(
        "neural_tangents.experimental (the TensorFlow-to-JAX bridge) is disabled in this book "
        "because it needs TensorFlow; use nt.empirical_ntk_fn on a JAX/flax model instead, or "
        "install tensorflow and tf2jax and import neural_tangents without companion.nt."
    )


def _install_tensorflow_stub() -> None:
    name = "neural_tangents.experimental"
    if name in sys.modules:
        return
    stub = types.ModuleType(name, "Stub installed by companion.nt: the TensorFlow bridge is disabled.")
    stub.empirical_ntk_fn_tf = _tensorflow_bridge  # type: ignore[attr-defined]
    stub.get_apply_fn_and_params = _tensorflow_bridge  # type: ignore[attr-defined]
    sys.modules[name] = stub


def _import_neural_tangents() -> types.ModuleType:
    if importlib.util.find_spec("neural_tangents") is None:
        raise ImportError(f"neural-tangents is not installed; {INSTALL_HINT}")
    _install_shim()
    _install_tensorflow_stub()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module("neural_tangents")
    # neural-tangents' own code trips DeprecationWarnings of new JAX/NumPy at call time
    # (e.g. "size requires ndarray"); they are harmless and not ours to fix.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"neural_tangents(\.|$)")
    for message in KNOWN_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
    return module


nt = _import_neural_tangents()
stax = nt.stax


def nt_self_check() -> str:
    r"""Run every neural-tangents path the book uses on tiny inputs; say which, or raise.

    1. ``stax`` kernels in float64 (``Dense`` in the NTK parametrisation with a bias, ``LayerNorm``
       right after it, ``Relu``, ``LeakyRelu``, ``Gelu``, ``Erf``, ``ElementwiseNumerical``,
       ``serial``): finite and positive on the diagonal, and the LayerNorm network's NTK diagonal
       equal to its closed form $W_\text{std}^2 + b_\text{std}^2$ of the read-out (independent of the input).
    2. ``empirical_ntk_fn`` (the default Jacobian contraction, as the transformer chapter uses it,
       with ``trace_axes``, ``vmap_axes`` and ``diagonal_axes``) on a flax network, equal to
       :func:`companion.kernels.empirical_ntk_fn`, which uses JAX's own transforms only.

    Returns a one-line summary; raises :class:`RuntimeError` naming the path that gave a wrong
    number (an exception of neural-tangents or JAX passes through unchanged).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from companion.arch import theory_spec
    from companion.kernels.reference import empirical_ntk_fn, stax_model
    from companion.models import MLP

    x = np.array([[1.0, 2.0], [-0.5, 3.0], [40.0, -7.0]])
    with jax.enable_x64(True):
        w, b = 1.3, 0.2
        _, _, kernel_fn = stax.serial(
            stax.Dense(4, W_std=1.5, b_std=0.3, parameterization="ntk"), stax.LayerNorm(axis=-1), stax.Relu(),
            stax.Dense(1, W_std=w, b_std=b, parameterization="ntk"),
        )
        diagonal = np.diag(np.asarray(kernel_fn(jnp.asarray(x), None, "ntk")))
        if not np.allclose(diagonal, w**2 + b**2, rtol=1e-9):
            raise RuntimeError(f"stax LayerNorm NTK diagonal {diagonal} differs from its closed form {w**2 + b**2}")
        for activation in ("relu", "leaky_relu", "gelu", "erf", "silu"):
            spec = theory_spec(depth=2, activation=activation, layernorm=(1,))
            k = np.asarray(stax_model(spec, numerical_degree=16)[2](jnp.asarray(x), None, "ntk"))
            if not (np.all(np.isfinite(k)) and np.all(np.diag(k) > 0)):
                raise RuntimeError(f"stax NTK of the {activation} network is not a kernel: {k}")

        model = MLP(theory_spec(depth=2, layernorm=(1,)).replace(width=16))
        params = model.init(jax.random.key(0), jnp.asarray(x[:1]))["params"]

        def f(p: Any, inputs: Any) -> Any:
            return model.apply({"params": p}, inputs)

        ours = np.asarray(jax.jit(empirical_ntk_fn(f))(jnp.asarray(x), None, params))
        theirs = np.asarray(nt.empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0)(jnp.asarray(x), None, params))
        diag = nt.empirical_ntk_fn(f, trace_axes=(-1,), diagonal_axes=(0,), vmap_axes=0)
        theirs_diagonal = np.asarray(diag(jnp.asarray(x), None, params))
    if not np.allclose(theirs, ours, rtol=1e-9, atol=0):
        raise RuntimeError(f"empirical_ntk_fn gives {theirs}, JAX's own transforms {ours}")
    if not np.allclose(theirs_diagonal, np.diag(ours), rtol=1e-9, atol=0):
        raise RuntimeError(f"empirical_ntk_fn(diagonal_axes=(0,)) gives {theirs_diagonal}, expected {np.diag(ours)}")
    return "stax kernels and empirical_ntk_fn agree with closed forms and JAX"
