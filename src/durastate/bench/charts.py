"""The PNG chart: update cost by backend x serializer x payload size, with references."""

from __future__ import annotations

from pathlib import Path

from durastate.bench.payloads import SIZES
from durastate.bench.results import RunResult

OPERATION = "update_cas"


def write_chart(result: RunResult, path: Path) -> bool:
    """One panel per backend: compare-and-swap update median (dict payload), log scale.

    Bars are durastate's serializers; dashes are the anchors and peers (their own
    operation, json). Returns False when there is nothing to draw.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b["label"] for b in result.meta.get("backends", [])]
    cells = [m for m in result.durastate() if m.ok and m.kind == "dict"
             and m.operation == OPERATION]
    if not cells:
        return False
    backends = [b for b in backends if any(m.backend == b for m in cells)]
    serializers = sorted({m.serializer for m in cells})
    sizes = [s for s in SIZES if any(m.payload == s for m in cells)]
    cols = min(3, len(backends))
    rows = (len(backends) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    width = 0.8 / max(1, len(serializers))
    ref_styles = {"anchor": ("black", "--"), "peer": ("tab:red", ":")}
    for index, backend in enumerate(backends):
        ax = axes[index // cols][index % cols]
        for s_index, serializer in enumerate(serializers):
            xs, ys = [], []
            for x, size in enumerate(sizes):
                found = [m for m in cells if m.backend == backend and m.serializer == serializer
                         and m.payload == size]
                if found and found[0].median_us:
                    xs.append(x + (s_index - (len(serializers) - 1) / 2) * width)
                    ys.append(found[0].median_us)
            ax.bar(xs, ys, width=width, label=serializer)
        labelled: set[str] = set()
        for ref in result.measurements:
            if ref.subject == "durastate" or ref.backend != backend or not ref.ok:
                continue
            if ref.payload not in sizes or ref.median_us is None:
                continue
            x = sizes.index(ref.payload)
            color, style = ref_styles.get(ref.subject, ("grey", "-"))
            name = f"{ref.subject}: {ref.name}"
            ax.hlines(ref.median_us, x - 0.45, x + 0.45, colors=color, linestyles=style,
                      label=None if name in labelled else name[:60])
            labelled.add(name)
        ax.set_yscale("log")
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_title(f"{backend}: {OPERATION} (dict)", fontsize=10)
        ax.set_ylabel("median latency, µs")
        ax.legend(fontsize=6, loc="upper left")
    for index in range(len(backends), rows * cols):
        axes[index // cols][index % cols].set_visible(False)
    meta = result.meta
    fig.suptitle(f"durastate custom-status update cost — {meta.get('date', '')} "
                 f"{meta.get('machine', {}).get('cpu', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
