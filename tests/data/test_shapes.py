"""The ``shapes`` generator: determinism, the labelling rule, concept masks, image content, speed."""

from __future__ import annotations


import numpy as np
import pytest

from nnxai.data import shapes

N = 1500


@pytest.fixture(scope="module")
def data():
    return shapes.generate(N, 3)


def test_same_seed_same_bytes_other_seed_differs():
    a, b, c = shapes.generate(300, 7), shapes.generate(300, 7), shapes.generate(300, 8)
    for key in ("x", "y", "concepts", "masks"):
        assert a[key].tobytes() == b[key].tobytes(), key
    assert a["x"].tobytes() != c["x"].tobytes()
    assert a["concepts"].tobytes() != c["concepts"].tobytes()


def test_types_and_ranges(data):
    x = data["x"]
    assert x.dtype == np.float32 and x.shape == (N, 3, 32, 32)
    assert data["y"].dtype == np.int64 and data["y"].shape == (N,)
    assert data["concepts"].dtype == np.float32
    assert data["concepts"].shape == (N, len(shapes.CONCEPT_FEATURES))
    assert data["masks"].dtype == bool and data["masks"].shape == (N, len(shapes.MASK_NAMES), 32, 32)
    assert x.min() >= 0.0 and x.max() <= 1.0
    levels = x.astype(np.float64) * 255
    assert np.abs(levels - np.round(levels)).max() < 1e-3  # 8-bit grey levels


def test_rule_holds_for_every_sample(data):
    np.testing.assert_array_equal(data["y"], shapes.label_from_concepts(data["concepts"]))
    table = data["concepts"]
    col = shapes.CONCEPT_FEATURES.index
    stripes = table[:, col("texture=stripes")] == 1
    triangle = table[:, col("shape=triangle")] == 1
    assert np.all(data["y"][stripes & ~triangle] == 1)
    assert np.all(data["y"][~stripes | triangle] == 0)


def test_rule_truth_table_independent_of_implementation():
    records = np.zeros(6, dtype=shapes.CONCEPT_DTYPE)
    records["shape"] = [0, 1, 2, 0, 1, 2]
    records["texture"] = [1, 1, 1, 0, 0, 0]
    records["size"], records["x"], records["y"] = 6.0, 16.0, 16.0
    expected = [1, 1, 0, 0, 0, 0]  # stripes and not triangle
    np.testing.assert_array_equal(shapes.label_from_concepts(records), expected)
    np.testing.assert_array_equal(shapes.label_from_concepts(shapes.concept_table(records)), expected)
    assert shapes.RULE_TEXT == "positive iff texture=stripes and shape!=triangle"


def test_classes_balanced_and_both_conditions_needed(data):
    for n in (N, 51):
        y = shapes.generate(n, 11)["y"] if n != N else data["y"]
        assert 0.4 <= y.mean() <= 0.6, n
    table, col = data["concepts"], shapes.CONCEPT_FEATURES.index
    stripes, triangle = table[:, col("texture=stripes")] == 1, table[:, col("shape=triangle")] == 1
    # Stripes alone is not sufficient (striped triangles exist and are negative) ...
    assert (stripes & triangle).sum() > 0.05 * N
    # ... and every (shape, texture) combination occurs.
    for s in ("circle", "square", "triangle"):
        shape_col = table[:, col(f"shape={s}")] == 1
        assert (shape_col & stripes).any() and (shape_col & ~stripes).any(), s
    # Exactly one shape and one colour per image.
    np.testing.assert_array_equal(table[:, 0:3].sum(1), 1)
    np.testing.assert_array_equal(table[:, 4:7].sum(1), 1)


def test_distractors_independent_of_label(data):
    table, y = data["concepts"], data["y"]
    for k in range(4, 7):  # colour proportions per class
        assert abs(table[y == 1, k].mean() - table[y == 0, k].mean()) < 0.08
    for k in (7, 8, 9):  # size, x, y means per class (in pixels)
        assert abs(table[y == 1, k].mean() - table[y == 0, k].mean()) < 0.6
    lo, hi = shapes.centre_range(table[:, 7])
    assert np.all((table[:, 8] >= lo - 1e-4) & (table[:, 8] <= hi + 1e-4))


def test_masks_consistent(data):
    masks = data["masks"]
    idx = {name: k for k, name in enumerate(shapes.MASK_NAMES)}
    evidence = masks[:, idx["evidence"]]
    assert evidence.any(axis=(1, 2)).all(), "evidence mask empty for some image"
    union = masks[:, idx["shape=circle"]] | masks[:, idx["shape=square"]] | masks[:, idx["shape=triangle"]]
    np.testing.assert_array_equal(evidence, union)
    np.testing.assert_array_equal(masks[:, idx["background"]], ~evidence)
    np.testing.assert_array_equal(masks[:, idx["texture=stripes"]] | masks[:, idx["texture=solid"]], evidence)
    assert not (masks[:, idx["texture=stripes"]] & masks[:, idx["texture=solid"]]).any()
    colours = masks[:, idx["colour=red"]] | masks[:, idx["colour=green"]] | masks[:, idx["colour=blue"]]
    np.testing.assert_array_equal(colours, evidence)
    # A concept's mask is non-empty exactly when the image has that concept.
    table = data["concepts"]
    for k, name in enumerate(shapes.CONCEPT_FEATURES[:7]):
        np.testing.assert_array_equal(masks[:, idx[name]].any(axis=(1, 2)), table[:, k] == 1, err_msg=name)


def test_object_fits_inside_the_image(data):
    evidence = data["masks"][:, shapes.MASK_NAMES.index("evidence")]
    border = evidence[:, 0, :] | evidence[:, -1, :]
    border = border.any(1) | (evidence[:, :, 0] | evidence[:, :, -1]).any(1)
    assert not border.any(), "an object touches the border (it may be cut off)"
    area = evidence.sum(axis=(1, 2))
    radius = data["concepts"][:, 7]
    assert np.all(area > 2.0 * radius**2) and np.all(area < 4.0 * radius**2)


def test_object_pixels_differ_from_background(data):
    lum = data["x"].mean(axis=1)
    inside = data["masks"][:, shapes.MASK_NAMES.index("evidence")]
    mean_in = (lum * inside).sum((1, 2)) / inside.sum((1, 2))
    mean_out = (lum * ~inside).sum((1, 2)) / (~inside).sum((1, 2))
    assert np.all(mean_in - mean_out > 0.1)
    assert mean_out.max() < shapes.BACKGROUND_MAX


def _edge_energy(x, mask):
    """Mean |difference| of horizontally / vertically adjacent pixels inside the mask; max of the two."""
    lum = x.mean(axis=1)
    h_pair, v_pair = mask[:, :, 1:] & mask[:, :, :-1], mask[:, 1:, :] & mask[:, :-1, :]
    eh = (np.abs(np.diff(lum, axis=2)) * h_pair).sum((1, 2)) / h_pair.sum((1, 2))
    ev = (np.abs(np.diff(lum, axis=1)) * v_pair).sum((1, 2)) / v_pair.sum((1, 2))
    return np.maximum(eh, ev)


def test_stripes_have_high_frequency_energy_inside_the_object(data):
    energy = _edge_energy(data["x"], data["masks"][:, shapes.MASK_NAMES.index("evidence")])
    stripes = data["concepts"][:, shapes.CONCEPT_FEATURES.index("texture=stripes")] == 1
    assert energy[stripes].min() > energy[~stripes].max()
    assert energy[stripes].mean() > 4 * energy[~stripes].mean()


def test_render_of_sampled_concepts_reproduces_generate():
    rng = np.random.default_rng(5)
    records = shapes.sample_concepts(600, rng)  # 600 > one render chunk
    images, masks = shapes.render(records, rng)
    ref = shapes.generate(600, 5)
    assert images.tobytes() == ref["x"].tobytes()
    assert masks.tobytes() == ref["masks"].tobytes()
    np.testing.assert_array_equal(shapes.concept_table(records), ref["concepts"])


def test_render_is_pure_and_masks_depend_only_on_concepts():
    records = shapes.sample_concepts(40, 1)
    a, b, c = shapes.render(records, 9), shapes.render(records, 9), shapes.render(records, 10)
    assert a[0].tobytes() == b[0].tobytes()
    assert a[0].tobytes() != c[0].tobytes()
    np.testing.assert_array_equal(a[1], c[1])


def test_table_round_trip_and_clipping_for_new_concept_vectors():
    records = shapes.sample_concepts(200, 2)
    back = shapes.concepts_from_table(shapes.concept_table(records))
    assert back.tobytes() == records.tobytes()
    # A rule extractor's synthetic vector, out of range, still renders a whole object.
    table = np.zeros((1, len(shapes.CONCEPT_FEATURES)), dtype=np.float32)
    table[0, [1, 3, 6]] = 1.0  # square, stripes, blue
    table[0, 7:] = [20.0, -5.0, 40.0]  # too big, off the image
    records = shapes.concepts_from_table(table)
    assert records["size"][0] == shapes.RADIUS_RANGE[1]
    images, masks = shapes.render(records, 0)
    evidence = masks[0, shapes.MASK_NAMES.index("evidence")]
    assert evidence.any() and not (evidence[0].any() or evidence[-1].any() or evidence[:, 0].any())
    assert shapes.label_from_concepts(records)[0] == 1


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="-3"):
        shapes.sample_concepts(-3, 0)
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        shapes.concepts_from_table(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="CONCEPT_DTYPE|dtype"):
        shapes.render(np.zeros((2, 10), dtype=np.float32), 0)
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        shapes.label_from_concepts(np.zeros((5, 2)))
