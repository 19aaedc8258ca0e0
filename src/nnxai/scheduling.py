"""Snakemake's job scheduler, made cheaper for this workflow: the greedy job selector (unless the command
line names a scheduler), each input sized once, and one timed re-evaluation pending at most.

Snakemake's default scheduler (``--scheduler ilp``) solves a mixed-integer programme with PuLP/CBC every
time it picks jobs.  Its objective ranks jobs by priority, then by cores used, then by how soon they free
``temp()`` files; this workflow declares no priorities and no temp files, so it picks what the greedy
selector would, at a price: on the 2-core machine of ``../shared/MACHINE-NOTES.md`` the Snakemake process
itself used 84 s of CPU in a 3 min smoke run with the ILP (the default run, ~2,500 jobs: 5 min 50 s in its
first 12 min) and 37 s with the greedy selector, and the smoke run took 3 min 01 s against 2 min 38 s
(``/usr/bin/time``, same commit, idle machine).  With two cores, that half core belongs to the jobs.

The scheduler is chosen from the command line before the Snakefile is read, and the only file that could
set it without a flag is a workflow profile (``profiles/default/``), a top-level folder the project's
layout has no room for.  So the Snakefile's ``onstart`` handler calls :func:`prefer_greedy`, which points
the running job scheduler at the greedy selector it already holds as its fallback.  It touches a private
attribute of Snakemake's ``JobScheduler``; Snakemake is pinned (``pyproject.toml``), and
``tests/test_scheduling.py`` fails if a new version moves it.  ``--scheduler ilp`` (or any
``--scheduler``) on the command line is left as given.

The same handler stops Snakemake from re-reading the size of every input of every ready job before each
selection (:func:`_size_known_inputs_once`): in the default run that was most of the remaining third of a
core its main thread used (``py-spy`` over 40 s: 200 of 269 busy samples in ``update_input_sizes``).

And it keeps at most one timed re-evaluation of the scheduler pending
(:func:`_one_pending_reevaluation`): Snakemake starts one after every round that leaves ready jobs
waiting, so the wake-ups per second grew with the number of jobs already done.
"""
from __future__ import annotations

import sys
from time import monotonic
from typing import Sequence


def prefer_greedy(workflow, argv: Sequence[str] | None = None) -> bool:
    """Make ``workflow``'s job scheduler select greedily; False (and unchanged) when ``argv`` names one."""
    argv = sys.argv if argv is None else argv
    if any(arg == "--scheduler" or arg.startswith("--scheduler=") for arg in argv):
        return False
    scheduler = getattr(workflow, "scheduler", None)
    greedy = getattr(scheduler, "job_selector_greedy", None)
    if greedy is None or not hasattr(scheduler, "_job_selector"):
        return False
    scheduler._job_selector = greedy
    _size_known_inputs_once(scheduler)
    _one_pending_reevaluation(scheduler)
    return True


def _size_known_inputs_once(scheduler) -> None:
    """Stat each job input once, not on every scheduling round.

    Before each selection Snakemake sizes every input of every ready job (the greedy selector starts jobs
    with larger inputs first): one ``stat`` and one asyncio task per path per round, a few hundred
    thousand tasks over ~2,500 rounds.  A ready job's inputs exist and are not rewritten while the workflow
    runs, so a size once read stays right: each job's inputs are sized once, when it first becomes ready
    (asking each of its paths whether it was sized, every round, cost the Snakemake process 13 % of its
    busy time in a smoke run: ``_IOFile.__hash__``).
    """
    update = getattr(scheduler, "update_input_sizes", None)
    sizes = getattr(scheduler, "_input_sizes", None)
    if update is None or not isinstance(sizes, dict):
        return

    sized: dict[int, object] = {}     # id -> job: the jobs whose inputs were sized (held, so ids stay unique)

    async def update_new_input_sizes(jobs):
        new = [job for job in jobs if id(job) not in sized]
        if new:
            await update(new)
            sized.update((id(job), job) for job in new)

    scheduler.update_input_sizes = update_new_input_sizes


def _one_pending_reevaluation(scheduler) -> None:
    """Keep at most one scheduling round waiting on a timer, not one more per finished job.

    After every scheduling round that leaves ready jobs waiting, Snakemake starts a timer that wakes the
    scheduler again once its job-rate window (``--max-jobs-per-timespan``, default 100 per second) has
    passed.  A round woken by that timer starts the next timer, and so does every round woken by a
    finished job, so each finished job adds a wake-up chain that lives as long as any job is waiting: the
    rounds per second grow with the number of jobs done.  1,000 jobs of 0.3 s on two cores took 77,377
    rounds and left 548 timer threads, against 1,154 rounds and 2 threads with this wrapper
    (``benchmarks/scheduler_rounds.py``); over the default run (~2,500 jobs) the Snakemake process had
    used 57 % of a core, and 3 % with it.  One timer due no later than the one asked for wakes the
    scheduler just as well: a timer is started only when none is pending that fires by then.  One case
    differs: where the job-rate limit binds (more jobs ready within one window than it allows, as on a
    cluster that submits hundreds at once), the round an earlier timer wakes may still find the window
    full, so a freed slot can wait up to one window (1 s by default) longer than with Snakemake's timers.
    """
    start_timer = getattr(scheduler, "_schedule_reevalutation", None)
    if start_timer is None:
        return
    due: list[float] = []          # when the pending timers fire (monotonic seconds)

    def schedule_reevaluation(delay) -> None:      # called by the scheduler's own thread only (schedule())
        now = monotonic()
        due[:] = [when for when in due if when > now]
        if any(when <= now + delay for when in due):
            return
        due.append(now + delay)
        start_timer(delay)

    scheduler._schedule_reevalutation = schedule_reevaluation
