"""weights.png: its log axis carries enough labelled ticks to read the largest weight off."""
import math

from tinyba2m.training import plots


def stats_row(epoch, lo, hi):
    return {"epoch": epoch, "min": lo, "p05": lo * 1.02, "p25": 0.95, "median": 1.0, "p75": 1.05, "p95": hi * 0.98,
            "max": hi, "mean": 1.0}


def test_weight_ticks_cover_the_range_in_round_steps():
    ticks = plots.weight_ticks(0.72, 1.38)
    assert ticks[0] <= 0.72 and ticks[-1] >= 1.38 and 1.0 in ticks and len(ticks) >= 6
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert steps == {0.1}
    wide = plots.weight_ticks(0.05, 3.0)                   # more than a decade: 1, 2, 5 per decade
    assert {0.1, 0.2, 0.5, 1.0, 2.0} <= set(wide) and min(wide) <= 0.05 and max(wide) >= 3.0
    assert plots.weight_ticks(math.nan, 1.2) == [] and plots.weight_ticks(0.0, 1.2) == []


def test_weights_png_labels_enough_ticks_to_read_1_38(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig))
    plots.plot_weight_distribution([stats_row(1, 0.8, 1.21), stats_row(2, 0.74, 1.38)], tmp_path / "weights.png")
    ax, = drawn[0].axes
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert {"0.8", "1", "1.3", "1.4"} <= set(labels), labels       # 1.38 lies between two labelled ticks 0.1 apart
    assert not [t for t in ax.yaxis.get_minorticklabels() if t.get_text()]
