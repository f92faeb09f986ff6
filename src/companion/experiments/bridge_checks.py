r"""The claims of chapter "From the theory's networks to the experiments'", asserted on a bridge summary.

Both functions take what :func:`companion.experiments.bridge.summarise` returns (the live run's,
or the ``results`` of the saved ``full`` run), so the chapter and the tests call the same checks.
"""

from __future__ import annotations

__all__ = ["check_summary", "check_convergence"]


def check_summary(results: dict) -> None:
    r"""Assert the chapter's claims on a summary (:func:`~companion.experiments.bridge.summarise`) of the live or the saved run.

    * In every regime and at every width, without LayerNorm the trained networks keep growing far
      out (growth above 1.5) and with LayerNorm they level off (below 1.1), as the kernel does.
    * The theory's seed noise out of distribution is at least five times larger without LayerNorm
      than with it (the spread over initialisations grows with $\|x\|$).
    * At the largest width, for both networks: the paper's networks (standard, Adam) differ from
      the kernel prediction by more than three times their measured seed noise, and the theory's
      regime (NTK, GD) is closer to its kernel prediction than they are, in units of the
      theory's noise floor (smaller :meth:`~companion.experiments.bridge.Bridge.z_rms`); and the paper's networks are not closer
      to the kernel at the largest width than at the smallest.

    Raises ``AssertionError`` naming what fails.
    """
    for regime, by_width in results.items():
        for width, row in by_width.items():
            assert row["no LN"]["growth"] > 1.5, f"{regime}, width {width}: no LN should keep growing"
            assert row["LN first"]["growth"] < 1.1, f"{regime}, width {width}: LN first should level off"
            assert row["no LN"]["noise_floor"] > 5 * row["LN first"]["noise_floor"], \
                f"{regime}, width {width}: the seed noise without LayerNorm should dwarf the one with it"
    widest = str(max(int(w) for w in results["NTK, GD"]))
    narrowest = str(min(int(w) for w in results["NTK, GD"]))
    for label in ("no LN", "LN first"):
        assert results["standard, Adam"][widest][label]["z_rms"] >= results["standard, Adam"][narrowest][label]["z_rms"], (
            f"{label}: the paper's networks should not come closer to the kernel as the width grows")
        theory, paper = results["NTK, GD"][widest][label], results["standard, Adam"][widest][label]
        assert paper["gap"] > 3 * paper["measured_floor"], (
            f"width {widest}, {label}: the paper's networks should differ from the kernel beyond their seed noise "
            f"(gap {paper['gap']:.3f}, seed noise {paper['measured_floor']:.3f})")
        assert theory["z_rms"] < paper["z_rms"], (
            f"width {widest}, {label}: the theory's regime should be closer to the kernel in units of the noise "
            f"(z {theory['z_rms']:.1f} against {paper['z_rms']:.1f})")



def check_convergence(results: dict) -> None:
    r"""Assert, on a run of three widths or more (the saved ``full`` run), the trend with width.

    In the theory's regime (NTK, GD), for both networks, the systematic gap to the kernel
    prediction (:meth:`~companion.experiments.bridge.Bridge.systematic_gap`, in units of one
    network's spread, so that it does not depend on the number of seeds) is smaller at the widest
    width than at the narrowest: the networks approach their infinite-width prediction, as the NTK
    theorem says they do. It is not required to fall at every width, nor to reach the noise: on
    the saved run the LayerNorm network's gap levels off (chapter "From the theory's networks to
    the experiments'"), and :meth:`~companion.experiments.bridge.Bridge.z_rms`, which grows like
    $\sqrt{S}$ times the gap, is within the noise or not depending on the number of seeds ``S``.

    Raises ``ValueError`` for fewer than three widths (no trend to read) and ``AssertionError``
    naming the network whose gap does not shrink.
    """
    widths = sorted(int(w) for w in results["NTK, GD"])
    if len(widths) < 3:
        raise ValueError(f"a trend with width needs at least three widths; this run has {widths}")
    for label in ("no LN", "LN first"):
        gaps = [results["NTK, GD"][str(w)][label]["systematic_gap"] for w in widths]
        assert gaps[-1] < gaps[0], (
            f"NTK, GD, {label}: the networks should be closer to the kernel at width {widths[-1]} than at "
            f"{widths[0]} (systematic gap {gaps[0]:.2f} then {gaps[-1]:.2f} of one network's spread)")
