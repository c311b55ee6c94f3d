"""What the examples and benchmarks show: rows of images with a readable label each, curves and relative-change dot
plots (matplotlib, an extra), and Markdown tables."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

ROW_HEIGHT_INCHES = 0.62
IMAGE_WIDTH_INCHES = 0.6


def labelled_rows_figure(rows: Sequence[tuple[str, torch.Tensor]], path, label_width_inches: float = 2.2,
                         dpi: int = 110):
    """Save one row of images per ``(label, images)`` entry, the label left of its row, no empty margins.

    Args:
        rows: labels and ``(k, C, H, W)`` images in [-1, 1] (grey or RGB); rows may hold different ``k``.
        path: the PNG to write.

    Returns:
        The path written.
    """
    plt = _pyplot()
    if not rows:
        raise ValueError("`rows` must hold at least one (label, images) pair.")
    columns = max(int(images.shape[0]) for _, images in rows)
    width = label_width_inches + columns * IMAGE_WIDTH_INCHES
    height = len(rows) * ROW_HEIGHT_INCHES
    fig = plt.figure(figsize=(width, height), dpi=dpi)
    grid = fig.add_gridspec(len(rows), columns + 1, width_ratios=[label_width_inches / IMAGE_WIDTH_INCHES] + [1] * columns,
                            left=0.0, right=1.0, bottom=0.0, top=1.0, wspace=0.04, hspace=0.06)
    for r, (label, images) in enumerate(rows):
        label_ax = fig.add_subplot(grid[r, 0])
        label_ax.axis("off")
        label_ax.text(0.97, 0.5, label, ha="right", va="center", fontsize=9, transform=label_ax.transAxes)
        pixels = ((images.detach().float().clamp(-1, 1) + 1) / 2).cpu()
        for c in range(columns):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.axis("off")
            if c < pixels.shape[0]:
                image = pixels[c]
                if image.shape[0] == 1:
                    ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                else:
                    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def markdown_table(records: Sequence[dict], columns: Sequence[str], formats: dict[str, str] | None = None) -> str:
    """A Markdown table of ``records``, one row each, aligned for reading in a terminal.

    Args:
        records: dicts holding (some of) ``columns``; a missing or ``None`` entry prints as "-".
        columns: the header, in order.
        formats: a format spec per column (``{"accuracy": ".0%"}``); other cells print with ``str``.
    """
    formats = formats or {}

    def cell(record: dict, column: str) -> str:
        value = record.get(column)
        if value is None:
            return "-"
        return format(value, formats[column]) if column in formats else str(value)

    table = [list(columns)] + [[cell(record, column) for column in columns] for record in records]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in table]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return Path(path)


def curves_plot(curves: dict[str, Sequence[tuple[float, float]]], path, xlabel: str, ylabel: str,
                floor: tuple[float, str] | None = None, log_y: bool = True) -> Path:
    """One line with markers per named curve of ``(x, y)`` points (for example FD against training minutes), an
    optional dashed horizontal ``(value, label)`` line (the real-data floor), log-scaled y by default."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for name, points in curves.items():
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
    if floor is not None:
        ax.axhline(floor[0], color="grey", linestyle="--", label=floor[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def relative_change_plot(rows: Sequence[tuple], views: Sequence[str], path, xlabel: str,
                         threshold: float | None = None) -> Path:
    """A dot per row and view: ``rows`` are ``(name, ratio for views[0], ratio for views[1], ...)`` with ratios to a
    baseline (1 = no change; ``None`` skips the dot); a line at 1 and an optional dashed decision ``threshold``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(rows) + 1.5), dpi=120)
    ratios = []
    for view, (label, marker) in enumerate(zip(views, "osdv^")):
        points = [(row[view + 1], index) for index, row in enumerate(rows) if row[view + 1] is not None]
        ratios += [p[0] for p in points]
        ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=label, zorder=3, alpha=0.8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    if threshold is not None:
        ax.axvline(threshold, color="grey", linestyle="--", label=f"{threshold:g}: the decision threshold")
    if ratios and max(ratios) / max(min(ratios), 1e-12) > 4:  # one far-off row would squash the rest on a linear axis
        ax.set_xscale("log")
        low, high = min(ratios + [threshold or 1.0]) * 0.9, max(ratios) * 1.1
        ticks = [t for t in (0.25, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20, 50, 100) if low <= t <= high]
        ax.set_xlim(low, high)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_yticks(range(len(rows)), [row[0] for row in rows])
    ax.invert_yaxis()
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    return _save(fig, path)
