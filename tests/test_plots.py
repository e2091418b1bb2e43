"""The book's figure style: colours that survive colour blindness, readable sizes, bands computed right."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from neuronlab import plots  # noqa: E402

# Machado, Oliveira & Fernandes (2009), severity 1.0, applied to linear RGB.
DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                         [-0.011820, 0.042940, 0.968881]])
PROTANOPIA = np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                       [-0.003882, -0.048116, 1.051998]])
#: Colours closer than this (CIELAB ΔE*76) are hard to tell apart in a legend.
MIN_DISTANCE = 15.0


def _linear_rgb(colour):
    c = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(linear):
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    x = xyz @ np.clip(linear, 0, 1) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(x > 0.008856, np.cbrt(x), 7.787 * x + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _distance(a, b, vision=np.eye(3)):
    return float(np.linalg.norm(_lab(vision @ _linear_rgb(a)) - _lab(vision @ _linear_rgb(b))))


def _contrast_with_white(colour):
    luminance = float(np.array([0.2126, 0.7152, 0.0722]) @ _linear_rgb(colour))
    return 1.05 / (luminance + 0.05)


@pytest.mark.parametrize("vision", [np.eye(3), DEUTERANOPIA, PROTANOPIA], ids=["normal", "deuteranopia", "protanopia"])
def test_palette_colours_stay_apart_under_colour_blindness(vision):
    pairs = [(a, b) for i, a in enumerate(plots.PALETTE) for b in plots.PALETTE[i + 1:]]
    closest = min(_distance(a, b, vision) for a, b in pairs)
    assert closest > MIN_DISTANCE


def test_the_colour_blindness_check_catches_red_against_green():
    # matplotlib's default red and green, the pair the book used to compare methods with
    assert _distance("#d62728", "#2ca02c", DEUTERANOPIA) < MIN_DISTANCE < _distance("#d62728", "#2ca02c")


def test_no_palette_colour_fades_into_a_white_page():
    assert min(_contrast_with_white(c) for c in plots.PALETTE) >= 2.0
    assert _contrast_with_white("#F0E442") < 2.0  # Okabe–Ito's yellow, left out on purpose


def test_compared_methods_differ_in_colour_marker_and_line_style():
    styles = [plots.method_style(i) for i in range(len(plots.PALETTE))]
    for key in ("color", "marker", "linestyle"):
        assert len({str(s[key]) for s in styles}) == len(styles)
    assert plots.method_style(len(plots.PALETTE)) == plots.method_style(0)


def test_book_style_sets_readable_fonts_and_the_palette():
    plots.use_book_style()
    rc = plt.rcParams
    assert rc["font.size"] >= 11 and rc["axes.labelsize"] >= 11 and rc["legend.fontsize"] >= 9
    cycle = [matplotlib.colors.to_hex(c).upper() for c in rc["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [c.upper() for c in plots.PALETTE]


def test_book_figure_is_never_wider_than_the_page():
    fig, axes = plots.book_figure(3, 1, panel_height=2.0)
    assert fig.get_size_inches().tolist() == [plots.FIGURE_WIDTH, 6.0] and len(axes) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="stack the panels"):
        plots.book_figure(1, 3, width=12)


def _band(ax):
    (band,) = ax.collections
    vertices = band.get_paths()[0].vertices
    return vertices


def test_mean_band_is_mean_plus_minus_sample_std_on_a_linear_axis():
    fig, ax = plots.book_figure()
    runs = np.array([[1.0, 2.0], [3.0, 6.0]])
    line = plots.plot_mean_band(ax, [0, 1], runs, "m")
    assert np.allclose(line.get_ydata(), [2.0, 4.0])
    vertices = _band(ax)
    for x, mean, std in [(0, 2.0, np.sqrt(2.0)), (1, 4.0, np.sqrt(8.0))]:
        ys = vertices[np.isclose(vertices[:, 0], x), 1]
        assert np.isclose(ys.min(), mean - std) and np.isclose(ys.max(), mean + std)
    assert "n = 2 seeds" in line.get_label()
    plt.close(fig)


def test_mean_band_on_a_log_axis_is_geometric_with_a_min_max_band():
    fig, ax = plots.book_figure()
    runs = np.array([[1.0, 1000.0], [100.0, 10.0]])
    line = plots.plot_mean_band(ax, [0, 1], runs, "m", log=True)
    assert np.allclose(line.get_ydata(), [10.0, 100.0]) and ax.get_yscale() == "log"
    vertices = _band(ax)
    assert np.isclose(vertices[np.isclose(vertices[:, 0], 0), 1].min(), 1.0)
    assert np.isclose(vertices[np.isclose(vertices[:, 0], 1), 1].max(), 1000.0)
    assert "min–max" in line.get_label()
    with pytest.raises(ValueError, match="positive"):
        plots.plot_mean_band(ax, [0, 1], [[0.0, 1.0]], "m", log=True)
    with pytest.raises(ValueError, match="columns"):
        plots.plot_mean_band(ax, [0, 1, 2], runs, "m")
    plt.close(fig)


def test_single_seed_curves_say_so():
    fig, ax = plots.book_figure()
    line = plots.plot_mean_band(ax, [0, 1], [1.0, 2.0], "m")
    assert "n = 1 seed)" in line.get_label() and not ax.collections
    plt.close(fig)


def test_reproduction_plot_places_ours_and_the_papers_numbers():
    frame = pd.DataFrame({"arch": ["A", "A", "B", "B"], "method": ["x", "y", "x", "y"],
                          "ours_mean": [1.0, 2.0, 3.0, 4.0], "ours_std": [0.1, 0.2, 0.3, 0.4],
                          "paper": [1.5, np.nan, 3.5, 4.5]})
    fig = plots.plot_reproduction(frame, row="arch", method="method", n_seeds=3)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]
    ours = [c for c in ax.containers]  # one errorbar container per method
    assert [list(c.lines[0].get_xdata()) for c in ours] == [[1.0, 3.0], [2.0, 4.0]]
    paper_x = [list(line.get_xdata()) for line in ax.lines if line.get_markerfacecolor() == "white"]
    assert [[v for v in xs if not np.isnan(v)] for xs in paper_x] == [[1.5, 3.5], [4.5]]
    assert "n = 3 seeds" in ax.get_xlabel() and ax.get_xlim()[0] == 0
    assert ax.get_ylim() == (1.5, -0.5)  # both rows in view, the first on top
    plt.close(fig)
    partial = frame[~((frame.arch == "B") & (frame.method == "x"))]  # a method missing on the last row
    fig = plots.plot_reproduction(partial, row="arch", method="method", zero_based=False)
    ax = fig.axes[0]
    assert ax.get_ylim() == (1.5, -0.5) and "not from zero" in ax.get_xlabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="ours_std"):
        plots.plot_reproduction(frame.drop(columns="ours_std"), row="arch", method="method")


def test_shared_chapter_plots_fit_the_page():
    frame = pd.DataFrame({"layer": [1, 2, 3], "activation_std": [1.0, 0.5, 0.25], "gradient_std": [1, 2, 4.0]})
    fig = plots.plot_signal_profile({"a": frame, "b": frame * 2})
    assert fig.get_size_inches()[0] <= plots.FIGURE_WIDTH and len(fig.axes) == 2
    plt.close(fig)

    class History:
        table = pd.DataFrame({"epoch": [1, 2], "test_acc": [0.5, 0.6], "train_loss": [1.0, 0.5],
                              "icv_fc": [0.3, 0.2]})

    axes = plots.plot_steadiness({"run": History()}, "fc")
    assert axes[0].figure.get_size_inches()[0] <= plots.FIGURE_WIDTH and len(axes) == 3
    plt.close("all")


def test_axis_helpers_mark_a_cut_axis_and_write_plain_log_ticks():
    fig, ax = plots.book_figure()
    ax.plot([1, 2], [60, 900])
    ax.set_yscale("log")
    plots.plain_log_ticks(ax)
    fig.canvas.draw()
    labels = {t.get_text() for t in ax.get_yticklabels() if t.get_text()}
    assert {"100", "200", "500"} <= labels and not any("10^" in t or "$" in t for t in labels)
    before = len(ax.lines)
    plots.mark_axis_break(ax)
    assert len(ax.lines) == before + 2 and all(not line.get_clip_on() for line in ax.lines[before:])
    plt.close(fig)


def test_signal_profile_keeps_each_method_in_its_style():
    frame = pd.DataFrame({"layer": [1, 2], "activation_std": [1.0, 0.5], "gradient_std": [1.0, 2.0]})
    fig = plots.plot_signal_profile({"He": frame, "LSUV": frame}, styles=[3, 1], legend=False)
    colours = [line.get_color() for line in fig.axes[0].lines]
    assert colours == [plots.PALETTE[3], plots.PALETTE[1]] and fig.axes[0].get_legend() is None
    plt.close(fig)
    with pytest.raises(ValueError, match="styles has 1 entries for 2 profiles"):
        plots.plot_signal_profile({"He": frame, "LSUV": frame}, styles=[0])
    plt.close("all")


def test_matrix_plot_writes_every_value_readably_and_checks_its_labels():
    fig, ax = plots.book_figure(1, 1)
    plots.plot_matrix(ax, [[1.0, 0.25], [-0.5, 0.8]], ["a", "b"], ["c", "d"], vmin=-1, vmax=1)
    texts = {t.get_text(): t.get_color() for t in ax.texts}
    assert set(texts) == {"1.00", "0.25", "-0.50", "0.80"}
    # black on the light (high) half of viridis, white on the dark half
    assert texts["1.00"] == texts["0.80"] == texts["0.25"] == "black" and texts["-0.50"] == "white"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c", "d"]
    with pytest.raises(ValueError, match="2 rows and 3 columns"):
        plots.plot_matrix(ax, [[1.0, 0.0], [0.0, 1.0]], ["a", "b"], ["c", "d", "e"])
    plt.close(fig)
