"""PNG plots of a run record (matplotlib, Agg backend: no display needed).

One figure per `PlotSpec`; when the points have several modes (paced, burst) each mode
gets its own panel; one line per server (and per y key when a spec has several, e.g.
p50 solid, p99 dashed). Points that failed are left out of the lines.

Error handling: plotting is best-effort; `write_plots` returns the files it wrote and
leaves out a plot whose data is empty. Import errors of matplotlib propagate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display needed

_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class PlotSpec:
    """One figure: `y_keys` of the figures against the scenario's x."""

    suffix: str
    y_keys: tuple[str, ...]
    ylabel: str
    title: str
    log_y: bool = False


PLOTS: dict[str, tuple[PlotSpec, ...]] = {
    "fanout": (
        PlotSpec("throughput", ("deliveries_per_server_cpu_s",),
                 "deliveries per server CPU-second", "Fan-out efficiency"),
        PlotSpec("latency", ("p50_ms", "p90_ms", "p99_ms"), "publish→receive latency (ms)",
                 "Latency percentiles", log_y=True),
    ),
    "idle": (
        PlotSpec("memory", ("kb_per_connection",), "server RSS per connection (KB)",
                 "Memory per idle connection"),
        PlotSpec("connect", ("connects_per_s",), "connections per second",
                 "Connect + subscribe rate"),
    ),
}


def _series(points: list[dict[str, Any]], x_key: str, mode: str | None, server: str,
            key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for p in points:
        f = p.get("figures")
        if f is None or p["server"] != server or f.get("mode") != mode:
            continue
        y = f.get(key)
        if isinstance(y, int | float):
            xs.append(float(p["point"][x_key]))
            ys.append(float(y))
    order = sorted(range(len(xs)), key=xs.__getitem__)
    return [xs[i] for i in order], [ys[i] for i in order]


def write_plots(record: dict[str, Any], x_key: str, stem: Path) -> list[Path]:
    """Write `<stem>-<suffix>.png` for each plot of the record's scenario."""
    points = record["points"]
    servers = list(dict.fromkeys(p["server"] for p in points))
    modes = list(dict.fromkeys(p["figures"].get("mode") for p in points if "figures" in p))
    written: list[Path] = []
    for spec in PLOTS.get(record["scenario"], ()):
        if not modes:
            break
        fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.2), squeeze=False)
        drawn = False
        for ax, mode in zip(axes[0], modes, strict=True):
            for si, server in enumerate(servers):
                color = f"C{si}"
                for ki, key in enumerate(spec.y_keys):
                    xs, ys = _series(points, x_key, mode, server, key)
                    if not xs:
                        continue
                    label = server if len(spec.y_keys) == 1 else f"{server} {key[:-3]}"
                    ax.plot(xs, ys, _STYLES[ki % len(_STYLES)], color=color, marker="o",
                            label=label)
                    drawn = True
            ax.set_xlabel(x_key)
            ax.set_ylabel(spec.ylabel)
            ax.set_title(spec.title + (f" ({mode})" if mode else ""))
            if spec.log_y:
                ax.set_yscale("log")
            elif drawn:
                ax.set_ylim(bottom=0)  # ratios read honestly only from a zero baseline
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        if drawn:
            path = stem.parent / f"{stem.name}-{spec.suffix}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)
    return written
