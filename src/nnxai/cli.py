"""The nnxai command line: one subcommand per pipeline stage, plus the registry listing.

Every Snakemake rule is one call of this CLI.  Called by hand, a stage reads the config of a profile
(``--profile smoke``); called by Snakemake, it gets the exact slice of the config it depends on as JSON
(``--settings``).  Choices (datasets, methods) come from the registries.

Every argument is checked before any work (:mod:`nnxai.cli_checks`): a user error -- a bad value, a
``--settings`` slice that is incomplete or contradicts ``-d``/``-m``/``-x``, a missing or damaged input
file -- ends with one line ``nnxai <command>: error: ...`` and exit status 2, never a traceback (set
``NNXAI_TRACEBACK=1`` to see one).  SIGTERM and Ctrl-C end a stage without leaving a partial output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path

from nnxai import cli_checks, registry
from nnxai.paths import MODEL_ROW

EPILOG = """examples:
  nnxai methods                          the survey's taxonomy, implemented methods marked
  nnxai methods --json                   the same as JSON (id, name, reference, coordinates, implemented)
  nnxai prepare --dataset shapes --profile smoke
  nnxai train --dataset shapes --model baseline --profile smoke
  nnxai explain --dataset shapes --model baseline --method integrated_gradients --profile smoke
  nnxai evaluate --dataset shapes --model baseline --method integrated_gradients --profile smoke
  nnxai report table3 --out paper/tables
The whole DAG: snakemake --cores 2 [--config profile=smoke]   (see README.md)"""


def _methods_table(records: list[dict]) -> str:
    rows = [("id", "engagement", "type", "scopes", "reference", "impl")]
    rows += [(r["id"], r["engagement"], r["explanation_type"], ",".join(r["scopes"]), r["reference"],
              "yes" if r["implemented"] else "-") for r in records]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n_impl = sum(r["implemented"] for r in records)
    lines.append(f"\n{n_impl} of {len(records)} methods implemented")
    return "\n".join(lines)


def cmd_methods(args) -> int:
    records = registry.as_records()
    if args.implemented:
        records = [r for r in records if r["implemented"]]
    if args.type:
        records = [r for r in records if r["explanation_type"] == args.type]
    print(json.dumps(records, indent=2, ensure_ascii=False) if args.json else _methods_table(records))
    return 0


def cmd_params(args) -> int:
    """The declared parameters of a method or metric, and the active profile's values."""
    from nnxai.config import load_config, method_params
    from nnxai.metrics import metrics
    from nnxai.params import describe

    cfg = load_config({"profile": args.profile} if args.profile else {})
    if registry.is_implemented(args.id):
        cls, values = registry.get(args.id), method_params(cfg, args.id)
    elif args.id in metrics():
        cls, values = metrics()[args.id], cfg["metric_params"].get(args.id, {})
    else:
        raise ValueError(f"{args.id!r} is neither an implemented method nor a metric; see `nnxai methods`")
    print(f"{cls.owner_name()} ({cls.__module__}.{cls.__name__}), profile {cfg['profile']}:")
    for line, name in zip(describe(cls.parameters), cls.parameters):
        print(f"  {line}\n      = {json.dumps(values.get(name))}")
    return 0


def _settings(args, stage: str, **wildcards) -> dict:
    """The stage's slice: ``--settings`` (checked against -d/-m/-x) or the profile's config."""
    if args.settings is not None:
        if args.profile:
            raise cli_checks.SettingsError("--settings and --profile exclude each other: the slice already "
                                           "holds every value the stage uses")
        settings = cli_checks.parse_settings(args.settings)
        if getattr(args, "device", None):
            settings = {**settings, "device": args.device}
    else:
        from nnxai.config import load_config
        from nnxai.workflow import stage_settings

        overrides = {"profile": args.profile} if args.profile else {}
        if getattr(args, "device", None):
            overrides["device"] = args.device
        settings = stage_settings(load_config(overrides), stage, **wildcards)
    return cli_checks.check_settings(stage, settings, **wildcards)


def cmd_prepare(args) -> int:
    from nnxai.stages import prepare as stage

    print(stage.prepare(_settings(args, "prepare", dataset=args.dataset), Path(args.workdir)))
    return 0


def cmd_train(args) -> int:
    from nnxai.stages import train as stage

    settings = _settings(args, "train", dataset=args.dataset, model=args.model)
    if args.threads is not None:
        settings["threads"] = args.threads
    print(stage.train(settings, Path(args.workdir), progress=not args.quiet))
    return 0


def cmd_explain(args) -> int:
    from nnxai.stages import explain as stage

    settings = _settings(args, "explain", dataset=args.dataset, model=args.model, method=args.method)
    print(stage.explain(args.dataset, args.model, settings, Path(args.workdir)))
    return 0


def cmd_evaluate(args) -> int:
    from nnxai.stages import evaluate as stage

    wildcards = {"dataset": args.dataset, "model": args.model}
    if args.model_only and args.method:
        raise cli_checks.SettingsError(f"--model-only scores the model alone; it excludes --method {args.method!r}")
    if args.method or args.model_only:
        wildcards["method"] = MODEL_ROW if args.model_only else args.method
    settings = _settings(args, "evaluate", **wildcards)
    for path in stage.evaluate(args.dataset, args.model, settings, Path(args.workdir), progress=not args.quiet):
        print(path)
    return 0


def cmd_aggregate(args) -> int:
    from nnxai.stages import aggregate as stage

    files = args.files
    if not files:
        files = [str(p.relative_to(args.workdir)) for p in sorted(Path(args.workdir).glob("data/metrics/*/*/*.json"))]
    for rel in files:
        if not _METRIC_FILE.match(Path(rel).as_posix()):
            raise ValueError(f"{rel!r} is not a metric file: aggregate takes paths relative to --workdir of the "
                             "form data/metrics/<dataset>/<model>/<method>.json")
    for path in stage.aggregate(Path(args.workdir), files):
        print(path)
    return 0


def cmd_report(args) -> int:
    from nnxai.report import REPORT_ITEMS

    item = REPORT_ITEMS[args.item]
    for path in item.writer(Path(args.out), **({"workdir": Path(args.workdir)} if item.needs_workdir else {})):
        print(path)
    return 0


def cmd_paper(args) -> int:
    from nnxai.report.paper_pdf import build

    print(build(Path(args.workdir), source=args.source, quiet=not args.verbose))
    return 0


def cmd_show(args) -> int:
    from nnxai.show import show

    print(show(args.file, args.limit))
    return 0


def cmd_targets(args) -> int:
    from nnxai.config import load_config
    from nnxai.workflow import targets

    groups = targets(load_config({"profile": args.profile} if args.profile else {}))
    for name, paths in groups.items():
        if args.stage in (None, name):
            print("\n".join(paths))
    return 0


def cmd_config(args) -> int:
    from nnxai.config import load_config, schema

    print(json.dumps(schema() if args.schema else load_config({"profile": args.profile} if args.profile else {}),
                     indent=2))
    return 0


_METRIC_FILE = re.compile(r"^data/metrics/[^/]+/[^/]+/[^/]+\.json$")


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (``nnxai train: error: ...``) like the stages' errors."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def cmd_dvc_yaml(args) -> int:
    from nnxai import dvc_yaml

    if args.write:
        print(dvc_yaml.write())
    elif args.check:
        current = (dvc_yaml.REPOSITORY / "dvc.yaml").read_text()
        if current != dvc_yaml.render():
            raise ValueError("dvc.yaml is not what the code generates; run `nnxai dvc-yaml --write`")
        print("dvc.yaml is up to date")
    else:
        print(dvc_yaml.render(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from nnxai.profiles import PROFILES
    from nnxai.data import DATASETS

    parser = _Parser(prog="nnxai", description=__doc__.splitlines()[0] + "\n\n" + "Reproduces "
                                     "'A Survey on Neural Network Interpretability' (Zhang et al., 2021).",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("methods", help="list the registry (the survey's catalogue with its coordinates)")
    p.add_argument("--json", action="store_true", help="print JSON records (the registry contract)")
    p.add_argument("--implemented", action="store_true", help="only implemented methods")
    p.add_argument("--type", choices=["rule", "hidden_semantics", "attribution", "example"])
    p.set_defaults(func=cmd_methods)

    def stage(name, help_text, func, model=False, method=False, method_required=True):
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--dataset", "-d", required=True, choices=sorted(DATASETS))
        if model:
            sp.add_argument("--model", "-m", required=True, type=cli_checks.model_id,
                            help="model variant id, e.g. baseline, l1, baseline_seed1")
        if method:
            sp.add_argument("--method", "-x", required=method_required, choices=[s.id for s in registry.specs()],
                            metavar="METHOD", help="a method id of `nnxai methods`" +
                            ("" if method_required else " (default: every method the config runs on the model, "
                             "and the model's accuracy)"))
        sp.add_argument("--profile", choices=PROFILES, help="config profile (default: default)")
        sp.add_argument("--settings", help="JSON slice of the config (as passed by the Snakefile)")
        sp.add_argument("--device", type=cli_checks.device, help="auto | cpu | cuda[:k]; overrides the config")
        sp.add_argument("--workdir", default=".", type=cli_checks.folder,
                        help="work directory holding data/ (default: .)")
        sp.set_defaults(func=func)
        return sp

    stage("prepare", "generate/load a dataset and write its prepared splits", cmd_prepare)
    tp = stage("train", "train one model variant on one dataset", cmd_train, model=True)
    tp.add_argument("--threads", type=cli_checks.threads,
                    help=f"torch threads, 1..{cli_checks.MAX_THREADS} (default: config)")
    tp.add_argument("--quiet", action="store_true", help="no progress bar")
    stage("explain", "run one method on one trained model", cmd_explain, model=True, method=True)
    ep = stage("evaluate", "score a model (accuracy) and its explanations with every applicable metric",
               cmd_evaluate, model=True, method=True, method_required=False)
    ep.add_argument("--quiet", action="store_true", help="no progress bar")
    ep.add_argument("--model-only", action="store_true", help="only the model's own scores (accuracy): "
                    "data/metrics/<dataset>/<model>/model.json")

    p = sub.add_parser("params", help="a method's or metric's declared parameters and the profile's values")
    p.add_argument("id", help="a method id (`nnxai methods --implemented`) or a metric id")
    p.add_argument("--profile", choices=PROFILES)
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("aggregate", help="collect metric files into data/metrics/all.csv")
    p.add_argument("files", nargs="*", help="metric files relative to --workdir (default: all)")
    p.add_argument("--workdir", default=".", type=cli_checks.folder)
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("report", help="write one table, figure or document (the results: --out paper)")
    # Not argparse choices: the names come from the report registry, which imports every writer (and
    # matplotlib, plotly, captum); main() checks the name when the command is `report`.
    p.add_argument("item", metavar="ITEM", help="a table, figure or document: `nnxai targets --stage "
                   "tables|figures|documents` lists their files (e.g. table3, taxonomy3d, results)")
    p.add_argument("--out", required=True, type=cli_checks.folder,
                   help="output folder: paper/tables, paper/figures, or paper for a document")
    p.add_argument("--workdir", default=".", type=cli_checks.folder)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("paper", help="compile paper/main.tex with the generated tables, figures and results into "
                       "paper/main.pdf (latexmk; `bash envs/tex.sh` installs TeX Live)")
    p.add_argument("--workdir", default=".", type=cli_checks.folder,
                   help="work directory whose paper/ holds the generated tables and figures (default: .)")
    p.add_argument("--source", type=Path, help="the LaTeX source (default: <workdir>/paper/main.tex; the "
                   "workflow passes the repository's)")
    p.set_defaults(func=cmd_paper)

    p = sub.add_parser("show", help="print an explanation record as text (rules, counterfactuals, examples, ...)")
    p.add_argument("file",
                   help="a record, e.g. data/explanations/monks1/baseline_sigmoid/mofn.json")
    p.add_argument("--limit", type=int, default=10, help="at most this many inputs, units or tests (default 10)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("targets", help="list the outputs of a profile's run")
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("--stage", choices=["prepared", "checkpoints", "explanations", "metrics", "aggregate",
                                       "tables", "figures", "documents", "paper"])
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("dvc-yaml", help="print dvc.yaml as the code generates it (stages, code deps)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite dvc.yaml")
    mode.add_argument("--check", action="store_true", help="exit 2 if dvc.yaml is not up to date")
    p.set_defaults(func=cmd_dvc_yaml)

    p = sub.add_parser("config", help="print the merged, validated config (or its JSON schema)")
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("--schema", action="store_true")
    p.set_defaults(func=cmd_config)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause and fix: bad values, settings, config, and missing, damaged or unwritable files.

    Everything else (a ``TypeError``, ``KeyError``, ``RuntimeError`` from a stage) is a bug and keeps its
    traceback."""
    from nnxai.config import ConfigError
    from nnxai.io import BadFileError
    from nnxai.models import CheckpointError
    from nnxai.registration import UnknownEntryError
    from nnxai.report.paper_pdf import PaperBuildError

    return (ConfigError, cli_checks.SettingsError, BadFileError, CheckpointError, ValueError, UnknownEntryError,
            OSError, PaperBuildError)


class _Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so that temporary files are removed on the way out."""


def _on_sigterm(signum, frame):
    raise _Terminated


@contextlib.contextmanager
def _sigterm_unwinds():
    """While a stage runs, SIGTERM (Snakemake cancelling a job, a cluster's scheduler) raises instead of
    killing the process, so :func:`nnxai.io.atomic_open` removes its temporary file."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:               # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


_PARSERS: dict[tuple, argparse.ArgumentParser] = {}


def _parser() -> argparse.ArgumentParser:
    """The parser :func:`main` uses, built once per set of data sets and catalogue ids (its choices): the
    worker builds it before it forks, so that a job skips ~30 ms of argparse and gettext look-ups."""
    from nnxai.data import DATASETS

    key = (tuple(DATASETS), tuple(s.id for s in registry.specs()))
    if key not in _PARSERS:
        _PARSERS.clear()
        _PARSERS[key] = build_parser()
    return _PARSERS[key]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    level = logging.INFO if args.verbose else logging.WARNING
    if logging.root.level != level:     # setLevel clears every logger's cache (~15 ms with torch's loggers)
        logging.root.setLevel(level)
    if args.command == "report":
        from nnxai.report import REPORT_ITEMS

        if args.item not in REPORT_ITEMS:
            print(f"nnxai report: error: report item {args.item!r} unknown; choose from "
                  f"{', '.join(sorted(REPORT_ITEMS))}", file=sys.stderr)
            return 2
    user_errors = _user_errors()
    try:
        with _sigterm_unwinds():
            return args.func(args)
    except user_errors as err:
        if os.environ.get("NNXAI_TRACEBACK"):
            raise
        print(f"nnxai {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated) as err:
        name = "interrupted" if isinstance(err, KeyboardInterrupt) else "terminated (SIGTERM)"
        print(f"nnxai {args.command}: {name}; no partial output was left, rerun the same command", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else 143


if __name__ == "__main__":
    raise SystemExit(main())
