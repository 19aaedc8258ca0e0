"""Config merging and validation: bad values fail at once, with the key named."""

import copy
import re

import pytest

from nnxai import registry
from nnxai.config import ConfigError, deep_merge, load_config, selected_methods, validate


def test_profiles_load_and_change_sizes():
    smoke, default = load_config({"profile": "smoke"}), load_config()
    assert smoke["profile"] == "smoke" and default["profile"] == "default"
    assert smoke["data"]["shapes"]["train"] < default["data"]["shapes"]["train"]
    # smoke keeps one data set of each kind (CI time), with the same model variants and methods
    assert set(smoke["datasets"]) < set(default["datasets"])
    from nnxai.data import DATASETS

    assert {DATASETS[d].kind for d in smoke["datasets"]} == {DATASETS[d].kind for d in default["datasets"]}
    assert smoke["methods"] == default["methods"]
    # ... and every model variant of the default run, each trained on at least one of its data sets (the seed
    # replicas as one kind: smoke trains one, the default two)
    import re

    from nnxai.workflow import model_cells

    def kinds(cfg):
        return {re.sub(r"^baseline_seed\d+$", "baseline_seed<k>", m) for _, m in model_cells(cfg)}

    assert kinds(smoke) == kinds(default) and "baseline_seed<k>" in kinds(smoke)
    paper = load_config({"profile": "paper"})
    assert {"mnist", "fashion_mnist", "cifar10"} <= set(paper["datasets"])


@pytest.mark.parametrize("override, key", [
    ({"datasets": ["shapes", "imagenet"]}, "datasets[1]"),
    ({"methods": ["gradient", "no_such_method"]}, "methods"),
    ({"data": {"shapes": {"train": -5, "val": 1, "test": 1}}}, "data.shapes.train"),
    ({"seed": "zero"}, "seed"),
    ({"models": {"image": ["baseline", "resnet"]}}, "models.image[1]"),
    ({"training": {"cnn": {"epochs": 0}}}, "training.cnn.epochs"),
    ({"device": "tpu"}, "device"),
    ({"profile": "huge"}, "profile"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(f"config.{key}")):
        load_config(override)


def test_unimplemented_method_is_refused(unimplemented_id):
    unimplemented = unimplemented_id
    with pytest.raises(ConfigError, match=f"{unimplemented}.*not implemented"):
        load_config({"methods": [unimplemented]})


def test_method_params_must_match_the_class():
    cfg = load_config()
    bad = copy.deepcopy(cfg)
    bad["method_params"]["integrated_gradients"] = {"n_explain": 3}
    with pytest.raises(ConfigError, match="method_params.integrated_gradients.*missing"):
        validate(bad)


def test_torchvision_sets_only_in_paper_profile():
    with pytest.raises(ConfigError, match="mnist"):
        load_config({"datasets": ["mnist"]})


def test_deep_merge_keeps_siblings():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


def test_all_selects_every_implemented_method():
    assert selected_methods(load_config()) == registry.implemented_ids()
    assert selected_methods(load_config({"methods": ["gradient"]})) == ["gradient"]


def test_metric_params_must_match_the_metric():
    cfg = load_config()
    bad = copy.deepcopy(cfg)
    bad["metric_params"]["pixel_flipping"].pop("steps")
    with pytest.raises(ConfigError, match="metric_params.pixel_flipping"):
        validate(bad)
    bad = copy.deepcopy(cfg)
    bad["metric_params"]["no_such_metric"] = {}
    with pytest.raises(ConfigError, match="no_such_metric"):
        validate(bad)


def test_thin_caps_every_test_count_of_its_data_set_only():
    """``thin`` caps what is declared against the test split (n_explain, a metric's n_inputs, the local
    method's n_explain of a composite) on its data set, and nothing else; the paper profile thins nothing."""
    from nnxai.workflow import stage_settings

    others = [m for m in registry.implemented_ids() if m != "spray"]    # spray needs 110 on digits (below)
    cfg = load_config({"thin": {"digits": 7, "causal": None, "shapes": 30}, "methods": others})
    explain = stage_settings(cfg, "explain", dataset="digits", model="baseline", method="integrated_gradients")
    assert explain["params"]["n_explain"] == 7
    assert explain["params"]["n_steps"] == cfg["method_params"]["integrated_gradients"]["n_steps"]
    same = stage_settings(cfg, "explain", dataset="causal", model="baseline", method="integrated_gradients")
    assert same["params"] == cfg["method_params"]["integrated_gradients"]
    spray = stage_settings(load_config({"thin": {"shapes": 30}}), "explain", dataset="shapes", model="baseline",
                           method="spray")["params"]
    assert spray["local_params"]["n_explain"] == 30
    evaluate = stage_settings(cfg, "evaluate", dataset="digits", model="baseline", method="gradient")
    assert evaluate["metric_params"]["continuity"]["n_inputs"] == min(7, cfg["metric_params"]["continuity"]["n_inputs"])
    assert evaluate["metric_params"]["continuity"]["radius"] == cfg["metric_params"]["continuity"]["radius"]
    assert all(v is None for v in load_config({"profile": "paper"})["thin"].values())


@pytest.mark.parametrize("thin, key", [({"digits": 0}, "thin.digits"), ({"imagenet": 5}, "thin"),
                                       ({"digits": 2.0}, "thin.digits")])
def test_bad_thin_is_refused(thin, key):
    with pytest.raises(ConfigError, match=re.escape(f"config.{key}")):
        load_config({"thin": thin})


def test_the_controls_explain_a_subset_and_methods_that_cannot_run_thinned_are_refused():
    """control_n_explain caps the shuffled-label control only, but not SpRAy's population of maps; its
    per-class 10-NN graphs on digits need 10 x 11 inputs, so a thinner digits is refused before any job,
    naming the keys to change."""
    from nnxai.workflow import stage_settings

    cfg = load_config({"control_n_explain": 40, "thin": {"shapes": None}, "datasets": ["shapes", "causal"]})
    control = stage_settings(cfg, "explain", dataset="shapes", model="baseline_shuffled_labels", method="lime")
    baseline = stage_settings(cfg, "explain", dataset="shapes", model="baseline", method="lime")
    assert control["params"]["n_explain"] == 40
    assert baseline["params"]["n_explain"] == cfg["method_params"]["lime"]["n_explain"]
    with pytest.raises(ConfigError, match=r"config.method_params.spray on digits/baseline: 50 explained inputs .* "
                                          r"at least 110 .*on this model: test split 500, thin.digits=50\)"):
        load_config({"thin": {"digits": 50}})
    cfg = load_config({"control_n_explain": 20})   # SpRAy, a population of maps, keeps the baseline's count
    assert stage_settings(cfg, "explain", dataset="digits", model="baseline_shuffled_labels",
                          method="spray")["params"]["local_params"]["n_explain"] == cfg["thin"]["digits"]



def test_regularised_variants_explain_a_paired_subset_within_the_budget():
    """l1, l2 and the active networks explain variant_n_explain inputs (the baseline's first ones), the
    re-running metrics score variant_n_reexplain of them, on variant_reexplain_datasets only; SpRAy, whose
    result is a population of maps, keeps the baseline's count; controls and the sigmoid twin are not capped."""
    from nnxai.config import method_params, metric_params
    from nnxai.workflow import metrics_for

    cfg = load_config({})
    assert method_params(cfg, "lime", "shapes", "expo")["n_explain"] == cfg["variant_n_explain"] < \
        method_params(cfg, "lime", "shapes", "baseline")["n_explain"]
    assert metric_params(cfg, "continuity", "shapes", "l1")["n_inputs"] == cfg["variant_n_reexplain"]
    assert metric_params(cfg, "pixel_flipping", "shapes", "l1") == metric_params(cfg, "pixel_flipping", "shapes", "baseline")
    assert method_params(cfg, "spray", "digits", "l1")["local_params"]["n_explain"] == cfg["thin"]["digits"]
    assert method_params(cfg, "lime", "iris", "baseline_sigmoid") == method_params(cfg, "lime", "iris", "baseline")
    assert "continuity" not in metrics_for(cfg, "shapes", "l1", "gradient")   # variant_reexplain_datasets: []
    assert "continuity" in metrics_for(load_config({"variant_reexplain_datasets": ["shapes"]}), "shapes", "l1",
                                       "gradient")
    assert "continuity" not in metrics_for(cfg, "digits", "l1", "gradient")
    assert "continuity" in metrics_for(cfg, "digits", "baseline", "gradient")
    paper = load_config({"profile": "paper"})
    assert "continuity" in metrics_for(paper, "digits", "l1", "gradient")


def test_a_listed_method_that_fits_no_model_of_the_run_is_refused_naming_what_it_needs():
    """Asking by name for a method that applies to no model of the run (a CAM of an MLP, KT on a ReLU CNN)
    is a config error before any job, naming the method, each model and what the method needs there."""
    with pytest.raises(ConfigError, match=r"config.methods: 'cam' applies to no model of this run \(causal/baseline: "
                                          r"needs image data, causal is tabular; causal/baseline_sigmoid: .*"
                                          r"this implementation runs on CNNs with a global-average-pool head"):
        load_config({"profile": "smoke", "methods": ["cam", "gradient"], "datasets": ["causal"],
                     "models": {"causal": ["baseline", "baseline_sigmoid"]}})
    assert load_config({"profile": "smoke", "methods": ["cam", "gradient"], "datasets": ["causal", "shapes"]})


def test_kt_on_the_shapes_cnn_is_refused_before_any_job_naming_the_model_and_what_kt_needs():
    """Issue 12's example: KT [81] reads the rules of sigmoid units of an MLP over tabular inputs; asked for on
    ``shapes``, where every network is a ReLU CNN, the config is refused (load_config runs before any job is
    planned), naming the method, each model and what KT needs there, then what this implementation runs on."""
    with pytest.raises(ConfigError) as err:
        load_config({"methods": ["kt"], "datasets": ["shapes"]})
    message = str(err.value)
    assert message.startswith("config.methods: 'kt' applies to no model of this run"), message
    assert "shapes/baseline: needs tabular data, shapes is image" in message, message
    assert "this implementation runs on sigmoid MLPs" in message and "on tabular data" in message, message


def test_a_refusal_says_what_the_implementation_runs_on_not_the_catalogue_s_wider_claim():
    """Global CEM [92] explains image CNNs in its paper, but this implementation reads tables only (its
    scope_note: "Tables only: ..."); the refusal on ``shapes`` says so and why, instead of following "needs
    tabular data" with the catalogue's "it runs on image CNNs, tabular MLPs"."""
    with pytest.raises(ConfigError) as err:
        load_config({"methods": ["global_cem"], "datasets": ["shapes"]})
    message = str(err.value)
    assert "shapes/baseline: needs tabular data, shapes is image" in message, message
    assert "this implementation runs on MLPs on tabular data (Tables only: " in message, message
    assert "image CNNs" not in message, message


def test_the_dual_net_starts_phase_two_after_forty_percent_of_its_training_in_every_profile():
    """[122]: the mask optimiser exploits after 6000 of 15000 batches (40 %); the config counts epochs, so every
    profile's ``exploration_epochs`` is 40 % of the epochs the dual-net trains on ``planted``."""
    from nnxai.config import training_for

    for profile in ("default", "smoke", "paper"):
        cfg = load_config({"profile": profile})
        epochs = training_for(cfg, "planted", "mlp")["epochs"]
        assert cfg["active_params"]["dualnet"]["exploration_epochs"] == 0.4 * epochs, profile


@pytest.mark.parametrize("rule, named", [
    ({"expox": ["lime"]}, r"variant_reexplain_methods: unknown key 'expox'; allowed: l1, l2, .*expo"),
    ({"baseline": ["lime"]}, r"variant_reexplain_methods: unknown key 'baseline'; allowed: l1, l2"),
    ({"expo": ["limey"]}, r"variant_reexplain_methods.expo\[0\]: 'limey' is not one of .*'lime', 'maple'"),
    ({"expo": ["lime", "lime"]}, r"variant_reexplain_methods.expo: items must be distinct"),
])
def test_variant_reexplain_methods_refuses_unknown_ids_naming_those_that_exist(rule, named):
    """The rule maps a regularised network (l1, l2, an active method's variant) to implemented method ids."""
    with pytest.raises(ConfigError, match=named):
        load_config({"variant_reexplain_methods": rule})
