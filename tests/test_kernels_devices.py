"""The kernels on every local device: results equal the single-device ones.

The multi-device run is a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``,
which makes JAX see two CPU devices (the flag must be set before JAX starts).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from companion.arch import theory_spec
from companion.kernels import kernel, kernel_diag, kernel_pairs

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import jax
    from companion.arch import theory_spec
    from companion.kernels import kernel, kernel_diag, kernel_pairs, recursion

    used = set()
    run_block = recursion._run_block
    def recording(*args):
        used.add(args[-1].id)
        return run_block(*args)
    recursion._run_block = recording

    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(700, 5)), rng.normal(size=(300, 5))
    spec = theory_spec(layernorm="every")
    out = {}
    for name, k in (("sym", kernel(x, None, spec)), ("cross", kernel(x, y, spec, block_size=512)),
                    ("diag", kernel_diag(x, spec)), ("pairs", kernel_pairs(x, x[::-1], spec))):
        out[name + "_nngp"], out[name + "_ntk"] = k
    assert used == {0, 1}, f"blocks ran on devices {sorted(used)} only"
    np.savez(sys.argv[1], **out)
    """
)


def test_two_devices_give_the_single_device_results(tmp_path: Path) -> None:
    path = tmp_path / "two.npz"
    env = os.environ | {"XLA_FLAGS": "--xla_force_host_platform_device_count=2",
                        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", SCRIPT, str(path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    two = np.load(path)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(700, 5)), rng.normal(size=(300, 5))
    spec = theory_spec(layernorm="every")
    one = {"sym": kernel(x, None, spec), "cross": kernel(x, y, spec, block_size=512),
           "diag": kernel_diag(x, spec), "pairs": kernel_pairs(x, x[::-1], spec)}
    for name, k in one.items():
        for field, matrix in zip(("nngp", "ntk"), k):
            # Other blocks change the padding, hence XLA's vectorisation and the last bits only.
            np.testing.assert_allclose(two[f"{name}_{field}"], matrix, rtol=1e-13, atol=1e-14, err_msg=name)
    assert np.array_equal(two["sym_ntk"], two["sym_ntk"].T)
