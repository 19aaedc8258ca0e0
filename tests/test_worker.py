"""The persistent worker (issue 10): a call it serves behaves as the same call in a fresh interpreter.

Same exit status, stdout and stderr bytes and output files; the thread pools and seeds a fresh process
would have; a vanished client takes its job with it; the server leaves with its parent; without a server
(or when it declines) ``python -m nnxai`` runs in-process as before.  One server with the real preload is
shared (~5 s to start); the process-control tests use light servers whose entry is a probe module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nnxai import worker
from nnxai.worker import lifecycle

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent('''
    """Entry of the test servers: a few process probes, anything else goes to the nnxai CLI."""
    import json, os, sys, time

    def main(argv):
        if argv[0] == "state":
            import numpy, torch
            from threadpoolctl import threadpool_info
            import nnxai.io
            umask = os.umask(0)
            os.umask(umask)
            print(json.dumps({
                "torch_threads": torch.get_num_threads(),
                "pools": sorted([i["internal_api"], i["num_threads"]] for i in threadpool_info()),
                "cwd": os.getcwd(), "argv": sys.argv[1:], "probe_var": os.environ.get("NNXAI_PROBE_VAR"),
                "umask": umask, "io_umask": nnxai.io._UMASK, "started": nnxai.io.PROCESS_START,
                "group_leader": os.getpgid(0) == os.getpid(), "torch_seed": torch.initial_seed(),
                "numpy_draw": float(numpy.random.random())}))
            return 0
        if argv[0] == "sleep":
            print(os.getpid(), flush=True)
            time.sleep(float(argv[1]))
            return 0
        if argv[0] == "exit":
            print("out", flush=True)
            print("err", file=sys.stderr)
            return int(argv[1])
        if argv[0] == "upper":
            sys.stdout.write(sys.stdin.read().upper())
            return 0
        from nnxai.cli import main as cli
        return cli(argv)
''')


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("probe")
    (folder / "nnxai_worker_probe.py").write_text(PROBE)
    return folder


@pytest.fixture(scope="module")
def base_env(probe_dir) -> dict:
    """The environment of the servers and (plus NNXAI_WORKER) of their clients."""
    env = {k: v for k, v in os.environ.items() if k not in (worker.ENV, worker.DISABLE_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(probe_dir)])
    return env


def _start(folder: Path, env: dict, **kwargs) -> worker.Handle:
    handle = worker.start(str(folder), env=env, timeout=60, **kwargs)
    assert handle is not None, Path(folder).joinpath(f"{os.getpid()}.log").read_text()
    return handle


@pytest.fixture(scope="module")
def real_server(tmp_path_factory, base_env):
    """The preload of the workflow's server, with the probe as entry (it hands the CLI's argv to nnxai.cli)."""
    handle = _start(tmp_path_factory.mktemp("real") / "w", base_env, entry="nnxai_worker_probe:main")
    yield handle
    worker.stop(handle)


@pytest.fixture
def light_server(tmp_path, base_env):
    handle = _start(tmp_path / "w", base_env, preload=(), entry="nnxai_worker_probe:main")
    yield handle
    worker.stop(handle)


def _served(handle) -> int:
    return Path(handle.log_path).read_text().count(" ended after ")


def nnxai(argv, env, handle=None, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    """``python -m nnxai ARGV``, forwarded to ``handle``'s server when one is given."""
    env = {**env, worker.ENV: handle.path} if handle else env
    return subprocess.run([sys.executable, "-m", "nnxai", *argv], env=env, cwd=cwd, capture_output=True,
                          timeout=120, **kwargs)


def served_calls(argv, env, handle, n=1, **kwargs) -> list[subprocess.CompletedProcess]:
    """``n`` simultaneous calls that the worker must serve.  If sources of nnxai change meanwhile (someone
    edits the checkout), it declines them and reloads: then wait for it and try once more."""
    env = {**env, worker.ENV: handle.path}
    for attempt in (1, 2):
        before = _served(handle)
        procs = [subprocess.Popen([sys.executable, "-m", "nnxai", *argv], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, **kwargs) for _ in range(n)]
        outs = [subprocess.CompletedProcess(p.args, p.returncode, *p.communicate(timeout=120)) for p in procs]
        for proc, out in zip(procs, outs):
            out.returncode = proc.returncode
        if _served(handle) == before + n:
            return outs
        stderr = b"".join(out.stderr for out in outs)
        assert attempt == 1 and b"sources changed" in stderr, f"not served by the worker: {stderr[-300:]!r}"
        deadline = time.monotonic() + 60
        while worker.ping(handle.path) is None and time.monotonic() < deadline:
            time.sleep(0.2)


def _same_call(argv, env, handle, cwd=None):
    [served] = served_calls(argv, env, handle, cwd=cwd)
    fresh = nnxai(argv, env, cwd=cwd)
    assert (served.returncode, served.stdout, served.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    return served


# --- same behaviour as a fresh process -------------------------------------------------------------------

def test_registry_listing_is_byte_for_byte_the_same(real_server, base_env):
    proc = _same_call(["methods", "--json"], base_env, real_server)
    assert proc.returncode == 0 and json.loads(proc.stdout)


@pytest.mark.parametrize("argv", [["train", "-d", "nope"],                                 # argparse error
                                  ["prepare", "-d", "iris", "--settings", "{not json"],    # a stage's user error
                                  ["--help"]])
def test_errors_and_exits_are_the_same(real_server, base_env, argv):
    _same_call(argv, base_env, real_server)


def test_a_stage_writes_the_same_files(real_server, base_env, tmp_path):
    for name in ("served", "fresh"):
        (tmp_path / name).mkdir()
    argv = ["prepare", "-d", "iris", "--profile", "smoke", "--workdir", "."]
    assert served_calls(argv, base_env, real_server, cwd=tmp_path / "served")[0].returncode == 0
    assert nnxai(argv, base_env, cwd=tmp_path / "fresh").returncode == 0
    served = sorted(p.relative_to(tmp_path / "served") for p in (tmp_path / "served").rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(tmp_path / "fresh") for p in (tmp_path / "fresh").rglob("*") if p.is_file())
    assert served == fresh and served
    for rel in served:
        assert (tmp_path / "served" / rel).read_bytes() == (tmp_path / "fresh" / rel).read_bytes(), rel


@pytest.mark.parametrize("threads", [None, "1"])
def test_thread_pools_umask_and_seeds_are_those_of_a_fresh_process(real_server, base_env, tmp_path, threads):
    env = {**base_env, "NNXAI_PROBE_VAR": "x"}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
        if threads:
            env[var] = threads
    code = "import sys, nnxai_worker_probe as p; sys.argv[1:] = ['state']; raise SystemExit(p.main(['state']))"
    fresh = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                           umask=0o027, check=True)
    [served] = served_calls(["state"], env, real_server, cwd=tmp_path, umask=0o027)
    assert served.returncode == 0, served.stderr
    fresh, served = json.loads(fresh.stdout), json.loads(served.stdout)
    for key in ("torch_threads", "cwd", "argv", "probe_var", "umask", "io_umask"):
        assert served[key] == fresh[key], key
    pools = lambda state: {api: {n for a, n in state["pools"] if a == api} for api, _ in state["pools"]}  # noqa: E731
    assert pools(served) == pools(fresh)          # the server loaded more libraries than the probe: by kind
    assert served["group_leader"] and served["umask"] == 0o027
    assert abs(served["started"] - time.time()) < 60             # nnxai.io's start time: this job's, not the server's
    again = json.loads(served_calls(["state"], env, real_server, cwd=tmp_path)[0].stdout)
    assert (again["torch_seed"], again["numpy_draw"]) != (served["torch_seed"], served["numpy_draw"])


def test_two_simultaneous_calls_both_complete(real_server, base_env):
    first, second = served_calls(["methods", "--json"], base_env, real_server, n=2)
    assert first.returncode == second.returncode == 0 and (first.stdout, first.stderr) == (second.stdout, second.stderr)


# --- process control -------------------------------------------------------------------------------------

def test_status_streams_and_stdin_pass_through(light_server, base_env):
    proc = nnxai(["exit", "3"], base_env, light_server)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\n", b"err\n")
    proc = nnxai(["upper"], base_env, light_server, input=b"abc\n")
    assert (proc.returncode, proc.stdout) == (0, b"ABC\n")


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _sleeper(handle, env):
    client = subprocess.Popen([sys.executable, "-m", "nnxai", "sleep", "60"], env={**env, worker.ENV: handle.path},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return client, int(client.stdout.readline())


def test_a_killed_client_takes_its_job_with_it(light_server, base_env):
    client, child = _sleeper(light_server, base_env)
    assert child != client.pid
    client.kill()
    client.wait(timeout=10)
    assert _gone(child, within=10)


def test_sigterm_is_relayed_and_the_client_dies_like_the_job(light_server, base_env):
    client, child = _sleeper(light_server, base_env)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=10) == -signal.SIGTERM
    assert _gone(child, within=10)


def test_the_server_leaves_when_its_parent_is_gone(tmp_path, base_env):
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    handle = _start(tmp_path / "w", base_env, preload=(), entry="nnxai_worker_probe:main", parent_pid=parent.pid)
    try:
        assert worker.ping(handle.path) == handle.process.pid
        parent.kill()
        parent.wait()
        assert handle.process.wait(timeout=10) == 0
        assert not os.path.exists(handle.path)
    finally:
        parent.kill()
        worker.stop(handle)


def test_the_server_leaves_when_idle(tmp_path, base_env):
    handle = _start(tmp_path / "w", base_env, preload=(), entry="nnxai_worker_probe:main", idle_timeout=0.5)
    try:
        assert handle.process.wait(timeout=10) == 0 and not os.path.exists(handle.path)
    finally:
        worker.stop(handle)


# --- fallback: the CLI runs in-process -------------------------------------------------------------------

def test_without_a_server_the_call_runs_in_process(tmp_path, base_env):
    fresh = nnxai(["methods", "--json"], base_env)
    for env in ({**base_env, worker.ENV: str(tmp_path / "absent.sock")},
                {**base_env, worker.ENV: str(tmp_path / "absent.sock"), worker.DISABLE_ENV: "1"}):
        proc = nnxai(["methods", "--json"], env)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, fresh.stdout, fresh.stderr)


def test_disabled_or_declined_calls_run_in_process(light_server, base_env):
    before = _served(light_server)
    proc = nnxai(["exit", "3"], {**base_env, worker.DISABLE_ENV: "1"}, light_server)
    assert proc.returncode == 2 and b"invalid choice: 'exit'" in proc.stderr      # nnxai.cli, not the probe
    proc = nnxai(["exit", "3"], {**base_env, "SOME_LIBRARY_SETTING": "1"}, light_server)
    assert proc.returncode == 2 and b"the worker declined (the environment differs (SOME_LIBRARY_SETTING))" \
        in proc.stderr
    assert _served(light_server) == before


# --- starting it for a workflow --------------------------------------------------------------------------

def test_socket_path_falls_back_to_a_short_one(tmp_path):
    path, temp_dir = lifecycle._socket_path(str(tmp_path / ("x" * 120)))
    assert len(os.fsencode(path)) <= 107 and temp_dir and path.startswith(temp_dir)
    os.rmdir(temp_dir)
    assert lifecycle._socket_path(str(tmp_path)) == (str(tmp_path / f"{os.getpid()}.sock"), None)


@pytest.mark.parametrize("settings, reason", [
    ({}, None),
    ({"dryrun": True}, "dry run"),
    ({"local_exec": False}, "cluster"),
    ({"deployment_settings": SimpleNamespace(deployment_method=[SimpleNamespace(name="CONDA")])}, "conda"),
])
def test_why_not_for_a_workflow(monkeypatch, settings, reason):
    monkeypatch.delenv(worker.DISABLE_ENV, raising=False)
    found = worker.why_not_for(SimpleNamespace(**settings))
    assert found is None if reason is None else reason in found
    monkeypatch.setenv(worker.DISABLE_ENV, "1")
    assert worker.why_not_for(SimpleNamespace(**settings))


def test_start_for_workflow_serves_the_jobs_and_stop_ends_it(monkeypatch, tmp_path, base_env):
    """The Snakefile's onstart/onsuccess: NNXAI_WORKER names a live server, then neither."""
    real_start = worker.start
    monkeypatch.setattr(lifecycle, "start", lambda folder, **kw: real_start(
        folder, **{**kw, "preload": (), "entry": "nnxai_worker_probe:main", "env": base_env}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(worker.DISABLE_ENV, raising=False)
    monkeypatch.delenv(worker.ENV, raising=False)
    handle = worker.start_for_workflow(SimpleNamespace(dryrun=False, local_exec=True, is_main_process=True))
    try:
        assert os.environ[worker.ENV] == handle.path and worker.ping(handle.path) == handle.process.pid
        assert Path(handle.path).parent == tmp_path / ".snakemake" / "nnxai-worker"
        assert nnxai(["exit", "5"], base_env, handle).returncode == 5
    finally:
        worker.stop()
    assert worker.ENV not in os.environ and handle.process.poll() is not None and not os.path.exists(handle.path)
