"""Publication-style figures for the diagnostics, in one consistent style.

Quantities such as a gradient norm at lag 2000 (~1e-600) do not fit in a float, so every
helper takes log10 values, plots them on a linear axis and labels the ticks ``10^k``;
nothing is ever exponentiated. Figures are sized for a single journal column
(:data:`COLUMN_WIDTH` inches) unless a caller asks for more.

Matplotlib is imported lazily (with the non-interactive Agg backend), so importing
``rnn_jax`` never needs a display or matplotlib itself.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

COLUMN_WIDTH = 3.4   # inches: one column of a two-column paper
PAGE_WIDTH = 7.0     # inches: full text width

# Colour-blind-safe palette (Okabe & Ito 2008), in a fixed order.
PALETTE = ("#000000", "#D55E00", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#F0E442")

STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "lines.linewidth": 1.3,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,   # TrueType in PDFs, editable text
    "mathtext.default": "regular",
}


def pyplot():
    """matplotlib.pyplot with the Agg backend and :data:`STYLE` applied."""
    import logging

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update(STYLE)
    # PDF font subsetting logs every table it prunes at INFO, which absl prints.
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    return plt


def power_of_ten_axis(ax, axis: str = "y", *, max_ticks: int = 6) -> None:
    """Label a linear axis that holds log10 values with integer ticks ``10^k``."""
    from matplotlib import ticker
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(ticker.MaxNLocator(nbins=max_ticks, integer=True, steps=[1, 2, 5, 10]))
    target.set_major_formatter(ticker.FuncFormatter(
        lambda v, _: "$10^{%d}$" % int(round(v)) if abs(v - round(v)) < 1e-6 else ""))


def lag_curves(ax, lags, curves: Sequence[dict], *, ylabel: str = r"$\|\partial L/\partial h_t\|$",
               xlabel: str = "time lag k", title: str | None = None) -> None:
    """Draw log10 curves against lag: one line per entry plus its shaded band.

    Each entry of ``curves`` is a dict with ``"mean"`` (log10 values, one per lag) and
    optionally ``"lo"``/``"hi"`` (band edges, log10), ``"label"``, ``"color"``,
    ``"linestyle"``. Non-finite values are left as gaps.
    """
    lags = np.asarray(lags)
    for i, c in enumerate(curves):
        color = c.get("color", PALETTE[i % len(PALETTE)])
        mean = np.asarray(c["mean"], np.float64)
        ax.plot(lags, mean, color=color, linestyle=c.get("linestyle", "-"), label=c.get("label"),
                zorder=3)
        if c.get("lo") is not None and c.get("hi") is not None:
            ax.fill_between(lags, np.asarray(c["lo"], np.float64), np.asarray(c["hi"], np.float64),
                            color=color, alpha=0.2, linewidth=0, zorder=2)
    power_of_ten_axis(ax, "y")
    ax.set_xlim(lags.min(), lags.max())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y")
    if title:
        ax.set_title(title)


def panels(n: int, *, width: float = COLUMN_WIDTH, panel_height: float = 1.55, sharey: bool = True,
           vertical: bool = True):
    """A figure of ``n`` panels stacked vertically (default) or side by side."""
    plt = pyplot()
    rows, cols = (n, 1) if vertical else (1, n)
    height = panel_height * rows + 0.55
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), sharex=vertical,
                             sharey=sharey, squeeze=False, constrained_layout=True)
    return fig, list(axes.reshape(-1))


def legend_above(fig, axes, *, ncol: int = 2) -> None:
    """One legend for the whole figure, above the panels, so it never covers a curve."""
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="outside upper center", ncol=ncol, handlelength=1.8,
               columnspacing=1.2)


def panel_label(ax, text: str) -> None:
    """A bold label such as "at init" above the panel's left edge, clear of every curve."""
    ax.set_title(text, loc="left", fontweight="bold", pad=3)


def save(fig, stem: str, formats: Sequence[str] = ("png", "pdf")) -> list[str]:
    """Write ``stem.png`` and ``stem.pdf`` (or the given formats) and close the figure."""
    paths = []
    for fmt in formats:
        path = f"{stem}.{fmt}"
        fig.savefig(path)
        paths.append(path)
    pyplot().close(fig)
    return paths


def wilson_interval(successes, trials, z: float = 1.96):
    """Wilson score interval of a binomial proportion (Wilson 1927), elementwise.

    Returns ``(lo, hi)`` arrays; 95% for the default ``z``. Unlike the normal
    approximation it stays inside [0, 1] and is not degenerate at 0/n or n/n, which
    is where success rates over a handful of seeds usually sit.
    """
    k = np.asarray(successes, np.float64)
    n = np.asarray(trials, np.float64)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got successes={k.tolist()}, "
                         f"trials={n.tolist()}")
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def success_rate_curves(ax, curves: Sequence[dict], *, xlabel: str = "sequence length T",
                        ylabel: str | None = "success rate", log2_x: bool = True,
                        title: str | None = None) -> None:
    """Success rate against a swept quantity, one line per entry, with 95% Wilson bars.

    Each entry of ``curves`` is a dict with ``"x"``, ``"successes"`` and ``"trials"``
    (equal-length sequences) and optionally ``"label"``, ``"color"``, ``"marker"``,
    ``"linestyle"``. Entries are offset slightly along x so that error bars of equal
    rates do not hide each other. With ``log2_x`` the x axis is logarithmic (base 2)
    with the swept values as ticks, the usual spacing of a doubling sweep.
    """
    xs_all = sorted({float(v) for c in curves for v in c["x"]})
    n = len(curves)
    for i, c in enumerate(curves):
        x = np.asarray(c["x"], np.float64)
        k = np.asarray(c["successes"], np.float64)
        t = np.asarray(c["trials"], np.float64)
        lo, hi = wilson_interval(k, t)
        rate = k / t
        shift = (i - (n - 1) / 2) * 0.03
        xp = x * 2.0 ** shift if log2_x else x + shift * (max(xs_all) - min(xs_all) or 1.0)
        color = c.get("color", PALETTE[i % len(PALETTE)])
        ax.errorbar(xp, rate, yerr=np.stack([rate - lo, hi - rate]), color=color,
                    marker=c.get("marker", "o"), markersize=3.5, linestyle=c.get("linestyle", "-"),
                    elinewidth=0.7, capsize=1.5, label=c.get("label"), zorder=3)
    if log2_x:
        from matplotlib import ticker
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(ticker.FixedLocator(xs_all))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_ylim(-0.04, 1.04)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, axis="y")
    if title:
        ax.set_title(title)


__all__ = ["COLUMN_WIDTH", "PAGE_WIDTH", "PALETTE", "STYLE", "lag_curves", "legend_above", "panel_label",
           "panels", "power_of_ten_axis", "pyplot", "save", "success_rate_curves",
           "wilson_interval"]
