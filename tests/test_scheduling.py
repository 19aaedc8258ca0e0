"""The Snakefile's greedy job selection (nnxai.scheduling): real Snakemake runs of a one-rule workflow."""
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nnxai.scheduling import prefer_greedy

SNAKEFILE = """
from nnxai.scheduling import prefer_greedy

onstart:
    chosen = prefer_greedy(workflow)
    selector = workflow.scheduler._job_selector
    greedy = selector == workflow.scheduler.job_selector_greedy
    open("selector.txt", "w").write(f"{chosen} {greedy}")

rule all:
    input: expand("part{k}.txt", k=range(4))
    output: "done.txt"
    shell: "cat {input} > {output}"

rule part:
    input: "seed.txt"
    output: "part{k}.txt"
    shell: "cat {input} > {output}; echo {wildcards.k} >> {output}"

rule seed:
    output: "seed.txt"
    shell: "echo seed > {output}"
"""


def run_snakemake(tmp_path, *flags):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "Snakefile"),
           "--directory", str(tmp_path), "--cores", "1", "--quiet", "all", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "done.txt").exists()
    return (tmp_path / "selector.txt").read_text()


def test_a_plain_run_selects_jobs_greedily(tmp_path):
    assert run_snakemake(tmp_path) == "True True"


@pytest.mark.parametrize("flags", [("--scheduler", "ilp"), ("--scheduler=ilp",)])
def test_a_scheduler_named_on_the_command_line_is_kept(tmp_path, flags):
    assert run_snakemake(tmp_path, *flags) == "False False"


def test_nothing_changes_without_a_job_scheduler():
    assert prefer_greedy(SimpleNamespace(scheduler=None), argv=["snakemake"]) is False


def test_inputs_are_sized_once():
    """Only jobs not sized yet go to Snakemake's sizing (none: no call); the sizes it read are kept."""
    import asyncio

    seen = []

    class Scheduler:
        def __init__(self):
            self._input_sizes = {}
            self._job_selector = None
            self.job_selector_greedy = object()

        async def update_input_sizes(self, jobs):
            seen.append([job.name for job in jobs])
            self._input_sizes.update({path: 1 for job in jobs for path in job.input})

    scheduler = Scheduler()
    assert prefer_greedy(SimpleNamespace(scheduler=scheduler), argv=["snakemake"])
    a, b = SimpleNamespace(name="a", input=["x", "y"]), SimpleNamespace(name="b", input=["y", "z"])
    asyncio.run(scheduler.update_input_sizes([a]))
    asyncio.run(scheduler.update_input_sizes([a, b]))
    asyncio.run(scheduler.update_input_sizes([a, b]))
    assert seen == [["a"], ["b"]] and set(scheduler._input_sizes) == {"x", "y", "z"}


class TimedScheduler:
    """Snakemake's JobScheduler as far as the re-evaluation timers go: records each timer it starts."""

    def __init__(self):
        self._input_sizes, self._job_selector, self.job_selector_greedy = {}, None, object()
        self.started = []

    async def update_input_sizes(self, jobs):
        pass

    def _schedule_reevalutation(self, delay):
        self.started.append(delay)


def test_one_reevaluation_timer_is_pending_at_most(monkeypatch):
    """Each finished job asked for a timer of its own, so wake-ups grew with the jobs done: now a timer
    starts only when none pending fires by the time asked for (a sooner one does), and again once it fired."""
    clock = [100.0]
    monkeypatch.setattr("nnxai.scheduling.monotonic", lambda: clock[0])
    scheduler = TimedScheduler()
    assert prefer_greedy(SimpleNamespace(scheduler=scheduler), argv=["snakemake"])
    for _ in range(50):                                    # 50 rounds within the same second
        scheduler._schedule_reevalutation(1)
    assert scheduler.started == [1]
    scheduler._schedule_reevalutation(10)                  # the pending 1-s timer fires sooner
    assert scheduler.started == [1]
    clock[0] += 0.5
    scheduler._schedule_reevalutation(0.2)                 # sooner than the pending one: started
    assert scheduler.started == [1, 0.2]
    clock[0] += 1.0                                        # both fired
    scheduler._schedule_reevalutation(1)
    assert scheduler.started == [1, 0.2, 1]


def test_a_real_run_wakes_the_scheduler_once_per_job_and_second(tmp_path):
    """60 short jobs on 2 cores: one scheduling round per finished job, plus at most one per second of the
    run, and no timer threads left (Snakemake as shipped: a wake-up chain per finished job, 83 rounds
    in one run of this test, and its timer threads still alive at the end)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from scheduler_rounds import run

    counts = run(patched=True, jobs=60, sleep=0.05, cores=2)
    assert counts["rounds"] <= 60 + 2 + counts["wall_s"] + 1
    assert counts["threads"] <= 3
