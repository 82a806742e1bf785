"""Charts of the document: matplotlib figures written as byte-deterministic SVG (default
style, fixed sizes, hash salt, no date), and their inline form for the HTML page."""
from __future__ import annotations

import io
import re

from aiops.compiler.compliance.model import Chart

COLORS = {"pass": "#2a7f62", "fail": "#c0392b", "muted": "#b0b0b0", "": "#4c72b0"}


# ---------------------------------------------------------------- charts
def _fig_roc(Figure, c: Chart):
    fig = Figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="chance")
    ax.plot(c.data.x, c.data.y, color=COLORS[""], linewidth=2, label=c.data.label)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
           title="ROC on the holdout")
    ax.legend(loc="lower right", frameon=False)
    ax.grid(alpha=0.3)
    return fig


def _fig_calibration(Figure, c: Chart):
    fig = Figure(figsize=(4.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="perfect calibration")
    ax.plot(c.data.x, c.data.y, marker="o", color=COLORS[""], linewidth=2, label="model")
    for x, y, n in zip(c.data.x, c.data.y, c.data.rows):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="#555555")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="mean predicted probability", ylabel="observed rate",
           title="calibration on the holdout")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return fig


def _fig_confusion(Figure, c: Chart):
    n = len(c.data.labels)
    size = 2.6 + 0.5 * n
    fig = Figure(figsize=(size + 0.8, size), layout="constrained")
    ax = fig.add_subplot()
    counts = c.data.counts
    top = max((v for r in counts for v in r), default=0) or 1
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=top)
    for i, r in enumerate(counts):
        for j, v in enumerate(r):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    ax.set_xticks(range(n), c.data.labels)
    ax.set_yticks(range(n), c.data.labels)
    ax.set(xlabel="predicted class", ylabel="true class", title="holdout rows")
    return fig


def _fig_bars(Figure, c: Chart):
    panels = c.data.panels
    heights = [max(len(p.bars), 1) for p in panels]
    fig = Figure(figsize=(7.2, 0.9 + 0.3 * sum(heights) + 0.5 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, p in zip(axes, panels):
        ys = list(range(len(p.bars)))
        ax.barh(ys, [b.value for b in p.bars], color=[COLORS[b.tone] for b in p.bars], height=0.6,
                xerr=[b.error or 0.0 for b in p.bars] if any(b.error is not None for b in p.bars) else None,
                error_kw={"ecolor": "#333333", "capsize": 2, "linewidth": 0.8})
        for y, b in zip(ys, p.bars):
            for bound in (b.lo, b.hi):
                if bound is not None:
                    ax.plot([bound, bound], [y - 0.4, y + 0.4], color="black", linewidth=1.5)
            ax.annotate(f"{b.value:.3f}", (max(b.value, b.value + (b.error or 0.0), 0.0), y),
                        textcoords="offset points", xytext=(3, 0), va="center", fontsize=7, color="#333333")
        ax.set_yticks(ys, [b.label for b in p.bars])
        ax.invert_yaxis()
        ax.set_title(p.title, fontsize=9, loc="left")
        ax.axvline(0, color="#666666", linewidth=0.8)
        ax.grid(axis="x", alpha=0.3)
        if c.data.xlim is not None:
            ax.set_xlim(*c.data.xlim)
        else:
            lo = min([0.0] + [b.value - (b.error or 0) for b in p.bars] + [b.lo for b in p.bars if b.lo is not None])
            hi = max([0.0] + [b.value + (b.error or 0) for b in p.bars] + [b.hi for b in p.bars if b.hi is not None]
                     + [b.lo for b in p.bars if b.lo is not None])
            ax.set_xlim(lo - 0.02 * (hi - lo or 1), hi + 0.15 * (hi - lo or 1))
    axes[-1].set_xlabel(c.data.xlabel)
    return fig


def _fig_histogram(Figure, c: Chart):
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    e = c.data.edges
    ax.bar(e[:-1], c.data.counts, width=[b - a for a, b in zip(e[:-1], e[1:])], align="edge", color=COLORS[""])
    ax.set(xlabel="residual (true - predicted)", ylabel="rows", title="holdout residuals")
    return fig


DRAW = {"roc": _fig_roc, "calibration": _fig_calibration, "confusion": _fig_confusion, "bars": _fig_bars,
        "histogram": _fig_histogram}
RC = {"svg.hashsalt": "aiops", "svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False}


def draw(charts: tuple[Chart, ...]) -> dict[str, str]:
    """SVG text per chart name. Byte-deterministic: default style, fixed sizes, hash salt, no date."""
    import matplotlib
    import matplotlib.style
    from matplotlib.figure import Figure

    out = {}
    with matplotlib.style.context("default"), matplotlib.rc_context(RC):
        for c in charts:
            fig = DRAW[c.kind](Figure, c)
            buf = io.BytesIO()
            fig.savefig(buf, format="svg", metadata={"Date": None})
            out[c.name] = buf.getvalue().decode("utf-8")
    return out


def inline_svg(name: str, svg: str) -> str:
    """The <svg> element for an HTML page: no XML prolog or metadata, ids prefixed so charts do not collide."""
    body = re.sub(r"\s*<metadata>.*?</metadata>", "", svg[svg.index("<svg"):], flags=re.S)
    body = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{name}-{m.group(1)}"', body)
    return re.sub(r'(url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{name}-{m.group(2)}", body)
