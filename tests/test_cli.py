"""The CLI: helpful --help, and clear errors (naming the bad value) before any expensive work."""

from nnxai.cli import main


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:          # argparse errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_every_stage(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("methods", "prepare", "train", "explain", "evaluate", "aggregate", "report", "targets"):
        assert command in out
    assert "snakemake --cores 2" in out


def test_unknown_dataset_and_method_are_refused_by_the_parser(capsys):
    code, _, err = run(capsys, "prepare", "--dataset", "imagenet")
    assert code == 2 and "imagenet" in err
    code, _, err = run(capsys, "explain", "-d", "shapes", "-m", "baseline", "-x", "magic")
    assert code == 2 and "magic" in err


def test_unimplemented_method_says_so(capsys, tmp_path, unimplemented_id):
    unimplemented = unimplemented_id
    code, _, err = run(capsys, "explain", "-d", "shapes", "-m", "baseline", "-x", unimplemented,
                       "--profile", "smoke", "--workdir", str(tmp_path))
    assert code == 2 and "not implemented yet" in err


def test_missing_inputs_name_the_file_and_the_fix(capsys, tmp_path):
    code, _, err = run(capsys, "explain", "-d", "shapes", "-m", "baseline", "-x", "gradient", "--profile", "smoke",
                       "--workdir", str(tmp_path))
    assert code == 2 and "checkpoints/shapes/baseline.pt" in err and "snakemake" in err
    code, _, err = run(capsys, "train", "-d", "shapes", "-m", "baseline", "--profile", "smoke",
                       "--workdir", str(tmp_path))
    assert code == 2 and "prepared/shapes" in err
    assert not (tmp_path / "data/checkpoints").exists()


def test_bad_settings_and_model_ids(capsys, tmp_path):
    code, _, err = run(capsys, "train", "-d", "shapes", "-m", "baseline", "--settings", "{oops")
    assert code == 2 and "not valid JSON" in err
    code, _, err = run(capsys, "train", "-d", "shapes", "-m", "resnet", "--profile", "smoke", "--workdir", str(tmp_path))
    assert code == 2 and "'resnet'" in err


def test_report_item_must_exist(capsys, tmp_path):
    code, _, err = run(capsys, "report", "table9", "--out", str(tmp_path))
    assert code == 2 and "table9" in err


def test_targets_lists_contract_paths(capsys):
    code, out, _ = run(capsys, "targets", "--profile", "smoke", "--stage", "checkpoints")
    assert code == 0 and "data/checkpoints/shapes/baseline.pt" in out.splitlines()


def test_profiles_are_listed_once_and_are_the_profile_files(capsys):
    from pathlib import Path

    from nnxai.config import PROFILES, config_dir

    assert sorted(PROFILES) == sorted(p.stem for p in (Path(config_dir()) / "profiles").glob("*.yaml"))
    code, _, err = run(capsys, "targets", "--profile", "tiny")
    assert code == 2 and "'tiny'" in err and all(p in err for p in PROFILES)
