"""The figures of the hidden-semantics methods: what each draws is what the records and all.csv hold.

net2vec_iou, neuron_ranking_ablation, filter_car_pruning, mimic_fidelity (from a synthetic all.csv and
records), and the content of activation_max and deconv_top9 (from synthetic records).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from nnxai.explanations import SurrogateModel, UnitConcepts, UnitImages
from nnxai.report import FIGURES, activation_max, deconv_top9, filter_car_pruning, mimic_fidelity, net2vec_iou, \
    neuron_ranking_ablation, unit_agreement
from nnxai.report._figure import figure_style, new_figure
from nnxai.report import _dot_rows
from nnxai.report._results import read_results
from nnxai.workflow import FIGURE_FORMATS
from nnxai.workflow import FIGURES as WORKFLOW_FIGURES

NEW_FIGURES = ("net2vec_iou", "neuron_ranking_ablation", "filter_car_pruning", "mimic_fidelity")
MODELS = ("l1", "baseline")   # all.csv order; the figures put the baseline first
CONCEPTS = {"shape=circle": (0.6, 0.1), "colour=red": (0.8, 0.3), "texture=solid": (None, None)}


def _value(model: str, key: str) -> float:
    """A distinct planted value per (model, key)."""
    return round(0.05 + 0.9 * ((zlib.crc32(f"{model}/{key}".encode()) % 997) / 997), 4)


def _rows() -> list[dict]:
    keys = {"neuron_ranking": ["ablation_drop." + k for k in ("top", "random", "bottom", "network_top",
                                                             "network_random", "network_bottom")],
            "filter_car": ["accuracy_drop", "accuracy_drop.random", "accuracy_drop.most",
                           *(f"accuracy_drop{s}.{layer}" for layer in ("conv1", "conv2") for s in ("", ".random", ".most"))],
            "mimic": ["fidelity", "fidelity.label_accuracy", "fidelity.logit_mse"],
            "net2vec": ["concept_seg_iou", "concept_seg_iou.single"], "model": ["accuracy"]}
    rows = []
    for model in MODELS:
        for method, metric_keys in keys.items():
            for key in metric_keys:
                value = _value(model, key)
                rows.append({"dataset": "shapes", "model": model, "method": method, "metric": key, "value": value,
                             "seed": 0, "ci_low": value - 0.02, "ci_high": value + 0.03, "n": 100})
    return rows


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    (root / "data/metrics").mkdir(parents=True)
    pd.DataFrame(_rows()).to_csv(root / "data/metrics/all.csv", index=False)
    folder = root / "data/explanations/shapes/baseline"
    folder.mkdir(parents=True)
    scores = {c: {"seg_iou": m, "single_iou": s, "single_filter": 3} for c, (m, s) in CONCEPTS.items()}
    UnitConcepts(units=[], concepts=list(CONCEPTS),
                 meta={"headline_layer": "conv3", "scores": {"conv3": scores, "conv1": {}}}).save(folder / "net2vec.json")
    return root


def _lines(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per series label, the (x, y) of the dots drawn."""
    out = {}
    for container in ax.containers:
        label = container.get_label()
        line = container.lines[0]
        out[label] = (np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float))
    return out


@pytest.mark.parametrize("name", NEW_FIGURES)
def test_new_figures_are_registered_written_and_reproducible(name, workdir, tmp_path):
    assert name in FIGURES and name in WORKFLOW_FIGURES
    first, second = FIGURES[name](tmp_path / "a", workdir=workdir), FIGURES[name](tmp_path / "b", workdir=workdir)
    assert [p.name for p in first] == [f"{name}.{ext}" for ext in FIGURE_FORMATS]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


@pytest.mark.parametrize("name", NEW_FIGURES)
def test_new_figures_say_so_without_their_records(name, tmp_path):
    (tmp_path / "data/metrics").mkdir(parents=True)
    pd.DataFrame([{"dataset": "iris", "model": "baseline", "method": "model", "metric": "accuracy", "value": 0.9,
                   "seed": 0}]).to_csv(tmp_path / "data/metrics/all.csv", index=False)
    html = FIGURES[name](tmp_path / "out", workdir=tmp_path)[2].read_text()
    assert "data:image/png;base64," in html


def test_neuron_ranking_draws_the_ablation_drops_of_all_csv(workdir):
    frame = read_results(workdir)
    cells = _dot_rows.cells_of(frame, "neuron_ranking")
    assert cells == [("shapes", "baseline"), ("shapes", "l1")]
    probe = _dot_rows.series_table(frame, cells, neuron_ranking_ablation.PROBE)
    network = _dot_rows.series_table(frame, cells, neuron_ranking_ablation.NETWORK)
    with figure_style():
        fig = new_figure(7, 3)
        neuron_ranking_ablation._draw(fig, probe, network, cells)
        for ax, series in zip(fig.axes, (neuron_ranking_ablation.PROBE, neuron_ranking_ablation.NETWORK)):
            drawn = _lines(ax)
            assert set(drawn) == set(series)
            for label, (_, key) in series.items():
                x, y = drawn[label]
                assert x.tolist() == pytest.approx([_value(m, key) for _, m in cells])
                assert np.round(y).tolist() == [0, 1]                       # one row per cell, baseline on top
    assert probe.loc[0, "low"] == pytest.approx(_value("baseline", "ablation_drop.top") - 0.02)


def test_filter_car_draws_least_random_most_per_model_and_per_layer(workdir):
    frame = read_results(workdir)
    (overall, cells), (layers, layer_cells) = filter_car_pruning.overall(frame), filter_car_pruning.per_layer(frame)
    assert layer_cells == [("shapes", "conv1"), ("shapes", "conv2")]
    with figure_style():
        fig = new_figure(6, 4)
        fig.set_layout_engine("none")
        filter_car_pruning._draw(fig, overall, cells, layers, layer_cells)
        per_model, per_layer = (_lines(ax) for ax in fig.axes[:2])
    for label, suffix in filter_car_pruning.KINDS.items():
        assert per_model[label][0].tolist() == pytest.approx([_value(m, "accuracy_drop" + suffix) for _, m in cells])
        assert per_layer[label][0].tolist() == pytest.approx(
            [_value("baseline", f"accuracy_drop{suffix}.{layer}") for _, layer in layer_cells])


def test_mimic_draws_agreement_accuracies_and_logit_mse(workdir):
    frame = read_results(workdir)
    cells = _dot_rows.cells_of(frame, "mimic")
    agreement = _dot_rows.series_table(frame, cells, mimic_fidelity.AGREEMENT)
    logits = _dot_rows.series_table(frame, cells, mimic_fidelity.LOGITS)
    with figure_style():
        fig = new_figure(7, 3)
        mimic_fidelity._draw(fig, agreement, logits, cells)
        drawn = {**_lines(fig.axes[0]), **_lines(fig.axes[1])}
    for label, (_, key) in {**mimic_fidelity.AGREEMENT, **mimic_fidelity.LOGITS}.items():
        assert drawn[label][0].tolist() == pytest.approx([_value(m, key) for _, m in cells])


def test_net2vec_draws_the_records_per_concept_ious_and_the_means(workdir):
    concepts = net2vec_iou.concept_ious(workdir)
    assert concepts["concept"].tolist() == ["colour=red", "shape=circle"]   # record order; no score: left out
    frame = read_results(workdir)
    cells = _dot_rows.cells_of(frame, "net2vec")
    means = _dot_rows.series_table(frame, cells, net2vec_iou.MEANS)
    with figure_style():
        fig = new_figure(6, 4)
        fig.set_layout_engine("none")
        net2vec_iou._draw(fig, concepts, means, cells)
        bars = [p.get_width() for p in fig.axes[0].patches]
        drawn = _lines(fig.axes[1])
    assert bars == pytest.approx([0.8, 0.6, 0.3, 0.1])                   # multi-filter bars, then single-filter
    assert drawn[net2vec_iou.MULTI][0].tolist() == pytest.approx([_value(m, "concept_seg_iou") for _, m in cells])


# ----------------------------------------------------------------------------- activation_max, deconv_top9
def test_activation_max_grid_has_a_cell_per_unit_and_regulariser_holding_its_image():
    regularisers, units = ("none", "l2", "robust"), [("logits", 0), ("conv2", 5)]
    rng = np.random.default_rng(0)
    entries = [(r, layer, unit) for layer, unit in units for r in regularisers]
    images = rng.uniform(-1, 1, size=(len(entries), 1, 4, 5))
    record = UnitImages(units=[{"layer": layer, "unit": unit, "regulariser": r, "concept": "shape=circle"}
                               for r, layer, unit in entries], concepts=[], images=images,
                        meta={"input_range": [-1.0, 1.0]})
    canvas, rows, columns = activation_max.mosaic(record)
    h, w, gap = 4, 5, activation_max.GAP
    assert canvas.shape == (len(units) * (h + gap), len(regularisers) * (w + gap), 3)
    assert len(rows) * len(columns) == len(units) * len(regularisers)
    assert columns == [activation_max.SHORT[r] for r in regularisers]
    assert rows[0] == "class 0" and rows[1] == "conv2 #5\nshape=circle"
    for image, (r, layer, unit) in zip(images, entries):
        i, j = [u for u in units].index((layer, unit)), regularisers.index(r)
        cell = canvas[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w, 0]
        assert cell == pytest.approx((image[0] + 1) / 2, abs=1e-6)   # the record keeps float32


def test_activation_max_grid_draws_every_class_and_the_first_channels_of_each_layer():
    """Eight channels per layer visualised: the grid keeps every class row and CHANNELS_SHOWN channels per
    layer (the lowest-numbered), in the record's order."""
    units = [{"layer": "logits", "unit": k} for k in range(3)] + [
        {"layer": layer, "unit": u} for layer in ("conv1", "conv2") for u in (9, 4, 7, 1, 12, 3, 5, 8)]
    drawn = activation_max.drawn_rows(units, per_layer=2)
    assert drawn == [("logits", 0), ("logits", 1), ("logits", 2), ("conv1", 1), ("conv1", 3), ("conv2", 1),
                     ("conv2", 3)]
    record = UnitImages(units=[{**u, "regulariser": "none"} for u in units], concepts=[],
                        images=np.zeros((len(units), 1, 4, 4)))
    canvas, rows, _ = activation_max.mosaic(record)
    assert len(rows) == 3 + 2 * activation_max.CHANNELS_SHOWN and canvas.shape[0] == len(rows) * (4 + activation_max.GAP)


def test_activation_max_figure_lists_every_drawn_image(tmp_path):
    folder = tmp_path / "data/explanations/shapes/baseline"
    folder.mkdir(parents=True)
    UnitImages(units=[{"layer": "conv1", "unit": k, "regulariser": r, "activation": 1.5 + k}
                      for k in range(2) for r in ("none", "l2")], concepts=[],
               images=np.zeros((4, 1, 4, 4))).save(folder / "activation_max.npz")
    html = activation_max.write_activation_max(tmp_path / "out", workdir=tmp_path)[2].read_text()
    assert html.count("<tr>") == 4                                           # one row per image
    assert html.count("<td>1.5</td>") == 2 and html.count("<td>2.5</td>") == 2  # the record's activations


def _deconv_record(units_per_layer: dict[str, int]):
    units, rng = [], np.random.default_rng(1)
    for layer, n in units_per_layer.items():
        units += [{"layer": layer, "unit": k, "crop_size": [3, 2], "activations": [9.0 - a for a in range(9)],
                   "test_indices": list(range(10 * k, 10 * k + 9)), "concept": "colour=red", "concept_share": 0.5}
                  for k in range(n)]
    images = rng.uniform(0, 1, size=(len(units), 2, 9, 1, 4, 4))
    return UnitImages(units=units, concepts=[], images=images,
                      meta={"receptive_fields": {layer: [3, 2] for layer in units_per_layer}})


def test_deconv_top9_shows_the_first_filters_of_each_layer_with_their_top9_crops():
    record = _deconv_record({"conv1": deconv_top9.FILTERS_SHOWN + 2, "conv2": 1})
    panels = deconv_top9.layer_panels(record)
    assert [len(p) for p in panels.values()] == [deconv_top9.FILTERS_SHOWN, 1]
    first = panels["conv1"][0]
    crops = record.images[0, 0, :, :, :3, :2]
    assert first["inputs"].shape == (3 * 4 - 1, 3 * 3 - 1, 3)               # 3x3 mosaic of 3x2 crops, 1 px gaps
    for i, crop in enumerate(crops):
        r, c = divmod(i, 3)
        assert first["inputs"][r * 4:r * 4 + 3, c * 3:c * 3 + 2, 0] == pytest.approx(crop[0])
    assert first["title"].startswith("filter 0: max 9") and "colour=red (50%)" in first["title"]


def test_deconv_top9_figure_lists_the_records_activations(tmp_path):
    folder = tmp_path / "data/explanations/shapes/baseline"
    folder.mkdir(parents=True)
    _deconv_record({"conv1": 2}).save(folder / "deconv_receptive_field.npz")
    html = deconv_top9.write_deconv_top9(tmp_path / "out", workdir=tmp_path)[2].read_text()
    assert html.count("<tr>") == 2 * 9                                       # 2 filters x their 9 top inputs


# ----------------------------------------------------------------------------- unit_agreement: mimic
def test_unit_agreement_lists_a_method_without_units_as_not_applicable(tmp_path, monkeypatch):
    folder = tmp_path / "data/explanations/shapes/baseline"
    folder.mkdir(parents=True)
    UnitConcepts(units=[{"layer": "conv1", "unit": 0, "concept": "a", "detector": True}],
                 concepts=["a"]).save(folder / "network_dissection.json")
    SurrogateModel(architecture={"type": "mlp"}, indices=[0], logits=np.zeros((1, 2)), parameters={"w": np.zeros(2)},
                   meta={"method": "mimic"}).save(folder / "mimic.npz")
    monkeypatch.setattr(unit_agreement, "_hidden_semantics_methods", lambda: [("mimic", ".npz")])
    assert set(unit_agreement.not_applicable(tmp_path)) == {"mimic"}
    table = unit_agreement.write_unit_agreement_table(tmp_path / "t", workdir=tmp_path)[0].read_text()
    assert "| mimic |" in table and "not applicable: it labels no units" in table
    html = unit_agreement.write_unit_agreement_figure(tmp_path / "f", workdir=tmp_path)[2].read_text()
    assert "mimic" in html and "it labels no units" in html
