"""The benchmarks' curve and relative-change plots (pnp_diffusers.figures)."""

import pytest

pytest.importorskip("matplotlib")

from pnp_diffusers.figures import curves_plot, relative_change_plot  # noqa: E402


def test_curves_plot_writes_a_png_with_a_floor_line(tmp_path):
    path = curves_plot({"a": [(1, 10.0), (2, 5.0)], "b": [(1, 8.0)]}, tmp_path / "sub" / "c.png", "minutes", "FD",
                       floor=(0.4, "floor"))
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_relative_change_plot_skips_missing_ratios(tmp_path):
    rows = [("base", 1.0, 1.0), ("lever", 0.9, None)]
    path = relative_change_plot(rows, ("at equal minutes", "at equal steps"), tmp_path / "r.png", "ratio", threshold=0.95)
    assert path.exists() and path.stat().st_size > 1000


def test_relative_change_plot_goes_logarithmic_when_one_row_is_far_off(tmp_path):
    import matplotlib.pyplot as plt

    seen = {}
    real_savefig = plt.Figure.savefig

    def savefig(fig, *args, **kwargs):
        seen["xscale"] = fig.axes[0].get_xscale()
        return real_savefig(fig, *args, **kwargs)

    plt.Figure.savefig = savefig
    try:
        relative_change_plot([("base", 1.0, 1.0), ("far", 7.0, 7.0)], ("a", "b"), tmp_path / "far.png", "ratio", 0.95)
        assert seen["xscale"] == "log"
        relative_change_plot([("base", 1.0, 1.0), ("near", 0.9, None)], ("a", "b"), tmp_path / "near.png", "ratio")
        assert seen["xscale"] == "linear"
    finally:
        plt.Figure.savefig = real_savefig
