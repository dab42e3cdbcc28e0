"""Executors: serial, a local process pool and Ray store the same records; a killed worker
or driver loses only the jobs in flight. A synthetic sweep (module-level functions below, so
that worker processes can import them) keeps the in-process tests fast; the artifact scripts
run at the smoke profile in subprocesses, as a user runs them."""
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

import mnog
from mnog import executors, mkl
from mnog.config import parse_config
from mnog.results import RecordStore
from mnog.sweep import Job, Runner, SweepError, run_job, run_sweep

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
VOLATILE = ("wall_s", "time", "provenance")  # where and when a record was computed, not what


# -- a synthetic sweep: 12 jobs × 2 trials, one diverging, some killing their worker ----------

JOBS = [Job.of("GD", 10, {"eta": float(eta)}) for eta in range(12)]
TRIALS = [1, 2]
SETTING = {"experiment": "executors test"}
HELD = 6.0  # jobs from this eta on wait while the folder holds a file `hold` (noisy_sum)


def load_numbers(context):
    """Setup: logs one line per call and process, so a test can count the loads."""
    folder, _ = context
    with open(Path(folder) / f"setup-{os.getpid()}.log", "a") as log:
        log.write("loaded\n")
    return 1000


def noisy_sum(context, shared, job, trials):
    """One job: a seeded float64 sum per trial (no threading in the arithmetic). eta 0
    diverges; the etas in `crashes` kill their own worker ("once": on the first attempt,
    "always": on every attempt), as the out-of-memory killer would. While the file `hold`
    exists in the folder, the jobs from eta HELD on wait (at most 5 minutes): a test can
    stop a sweep part-way, whatever the scheduling."""
    folder, crashes = context
    eta = job.config["eta"]
    time.sleep(0.05)
    give_up = time.monotonic() + 1800
    while eta >= HELD and (Path(folder) / "hold").exists() and time.monotonic() < give_up:
        time.sleep(0.02)
    crash = dict(crashes).get(eta)
    marker = Path(folder) / f"crashed-{eta}"
    if crash == "always" or (crash == "once" and not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if eta == 0:
        raise mnog.NonFiniteError("the model diverged")
    out = {}
    for trial in trials:
        generator = torch.Generator().manual_seed(int(job.key(SETTING, trial), 16) % 2**63)
        out[trial] = {"value": eta * float(torch.randn(shared, generator=generator, dtype=torch.float64).sum())}
    return out


def worker_identity(folder, workers):
    """Where it ran (pid, pinned GPU, torch threads), once `workers` calls have started: each
    call waits for the others (at most 5 minutes), so that `workers` calls on a pool of as
    many workers run one on each, whichever worker starts first."""
    (Path(folder) / str(os.getpid())).touch()
    give_up = time.monotonic() + 1800
    while len(list(Path(folder).iterdir())) < workers and time.monotonic() < give_up:
        time.sleep(0.02)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), torch.get_num_threads()


def identities(executor, folder):
    """{pid: (pinned GPU, torch threads)} of every worker of `executor` (worker_identity)."""
    calls = [(str(folder), executor.workers)] * executor.workers
    return {pid: (device, threads) for _, (pid, device, threads), _ in executor.map_unordered(worker_identity, calls)}


def sweep(folder, executor, crashes=()):
    store = RecordStore(Path(folder) / "records.jsonl")
    with executor:
        return run_sweep(JOBS, TRIALS, Runner(load_numbers, noisy_sum, (str(folder), crashes)), store, SETTING,
                         executor=executor)


def sweep_in_a_driver_process(folder):
    """The driver of test_a_killed_driver_loses_only_the_jobs_in_flight (run in a subprocess)."""
    sweep(folder, executors.Local(2))


def running(pid):
    """Whether process `pid` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stable(records):
    return {r["key"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in records}


def raw_keys(path):
    return [json.loads(line)["key"] for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def serial_records(tmp_path_factory):
    return stable(sweep(tmp_path_factory.mktemp("serial"), executors.Serial()))


# -- the local process pool ---------------------------------------------------------------------

def test_two_local_workers_store_the_serial_records_and_load_once_each(tmp_path, serial_records):
    records = sweep(tmp_path, executors.Local(2))
    assert stable(records) == serial_records and len(records) == 24
    diverged = [r for r in records if r["config"]["eta"] == 0]
    assert [r["metrics"] for r in diverged] == [None, None] and "diverged" in diverged[0]["error"]
    logs = list(tmp_path.glob("setup-*.log"))
    assert 1 <= len(logs) <= 2 and all(log.read_text() == "loaded\n" for log in logs)   # once per worker
    assert {r["provenance"]["threads"] for r in records} == {max(1, executors.cpu_cores() // 2)}   # cores / workers
    assert str(os.getpid()) not in " ".join(log.name for log in logs)                   # none ran in the driver


def test_a_killed_worker_costs_only_its_job(tmp_path, serial_records):
    executor = executors.Local(2)
    records = sweep(tmp_path, executor, crashes=((3.0, "once"), (7.0, "once")))
    assert stable(records) == serial_records
    keys = raw_keys(tmp_path / "records.jsonl")
    assert len(keys) == len(set(keys)) == 24 and executor.restarts == 2


def test_a_job_that_always_kills_its_worker_is_given_up_and_retried_by_a_rerun(tmp_path, serial_records):
    # Whether it first died beside another job or alone is scheduling; what follows is not:
    # given up after retries + 1 attempts alone, its neighbours stored, not blamed.
    executor = executors.Local(2, retries=1)
    with pytest.raises(SweepError, match=r"1 of 12 jobs failed.*eta': 5.0.*WorkerDied: the worker process died "
                                         r"on all 2 attempts of this job"):
        sweep(tmp_path, executor, crashes=((5.0, "always"),))
    keys = raw_keys(tmp_path / "records.jsonl")
    assert len(keys) == len(set(keys)) == 22                  # its neighbours were not blamed
    assert {json.loads(line)["config"]["eta"] for line in (tmp_path / "records.jsonl").read_text().splitlines()} \
        == {float(eta) for eta in range(12)} - {5.0}
    assert stable(sweep(tmp_path, executors.Local(2))) == serial_records   # the re-run ran only that job
    assert len(raw_keys(tmp_path / "records.jsonl")) == 24


def test_a_killed_driver_loses_only_the_jobs_in_flight(tmp_path, serial_records):
    # The jobs from eta 6 on wait while `hold` exists: the driver is killed with the first six
    # jobs stored and two in flight, however the processes were scheduled.
    (tmp_path / "hold").touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    code = f"import test_executors; test_executors.sweep_in_a_driver_process({str(tmp_path)!r})"
    driver = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    store = tmp_path / "records.jsonl"
    stored = 2 * int(HELD)                                    # the records of the jobs before eta 6
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and driver.poll() is None and (
            not store.exists() or store.read_text().count("\n") < stored):
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    assert driver.wait() == -signal.SIGKILL
    survived = store.read_text().splitlines()
    assert len(survived) == stored
    workers = [int(log.stem.split("-")[1]) for log in tmp_path.glob("setup-*.log")]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and any(map(running, workers)):
        time.sleep(0.05)
    assert workers and not any(map(running, workers))          # the driver's workers did not outlive it
    (tmp_path / "hold").unlink()
    rerun = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    final = store.read_text().splitlines()
    assert final[:len(survived)] == survived                 # kept, not recomputed
    keys = [json.loads(line)["key"] for line in final]
    assert len(keys) == len(set(keys)) == 24
    assert stable(map(json.loads, final)) == serial_records
    assert "6 of 12 jobs to run" in rerun.stdout and "12/12" in rerun.stderr


def test_workers_are_pinned_round_robin_to_the_gpus_and_share_the_cores(tmp_path):
    with executors.Local(3, gpus=["0", "1"]) as executor:
        seen = identities(executor, tmp_path)
    assert sorted(device for device, _ in seen.values()) == ["0", "0", "1"]       # 3 workers, 2 GPUs
    assert {threads for _, threads in seen.values()} == {max(1, executors.cpu_cores() // 3)}


def test_worker_processes_refuse_a_closure_with_a_clear_error():
    def closure(job, trials):
        return {}
    with executors.Local(1) as executor, pytest.raises(TypeError, match="mnog.sweep.Runner"):
        list(executor.map_unordered(run_job, [(closure, JOBS[0], TRIALS)]))


# -- configuration --------------------------------------------------------------------------------

def test_every_sweeping_script_takes_the_executor_options_and_rejects_bad_ones(capsys):
    from artifact import figure2_label_erasure, table2_representation_collapse, table5_data_poisoning
    for script in (table5_data_poisoning, table2_representation_collapse, figure2_label_erasure):
        with socket.socket() as server:                      # something listening, as a Ray head would
            server.bind(("127.0.0.1", 0))
            server.listen()
            address = f"127.0.0.1:{server.getsockname()[1]}"
            cfg, _, options = parse_config(script.Config, script.PROFILES, "", ["--profile", "smoke", "--executor",
                                                                               "ray", "--address", address,
                                                                               "--workers", "8"])
        assert (options.executor, options.address, options.workers) == ("ray", address, 8)
        assert not hasattr(cfg, "executor")                   # where jobs run is not part of the experiment
        assert parse_config(script.Config, script.PROFILES, "", ["--profile", "smoke"])[2].executor == "local"
    for argv, message in [(["--executor", "dask"], "invalid choice: 'dask'"),
                          (["--address", "10.0.0.1:6379"], "needs --executor ray"),
                          (["--workers", "-1"], "workers must be an integer ≥ 0"),
                          (["--executor", "serial", "--workers", "2"], "needs --executor local")]:
        with pytest.raises(SystemExit):
            parse_config(table5_data_poisoning.Config, table5_data_poisoning.PROFILES, "", ["--profile", "smoke",
                                                                                          *argv])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(table5_data_poisoning.Config, table5_data_poisoning.PROFILES, "", ["--help"])
    usage = capsys.readouterr().out
    assert all(flag in usage for flag in ("--executor {local,ray,serial}", "--workers", "--address"))
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        executors.ExecutorConfig(executor="dask")


def test_the_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)              # as if Ray were not installed
    with pytest.raises(executors.ExecutorError, match=r"pip install 'mnog\[ray\]'"):
        executors.Ray()


# -- Ray: a local cluster on loopback, started and stopped by the tests ----------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    """`ray start --head` on 127.0.0.1 with 2 CPUs and a throwaway token; yields its address.
    Ray reads the token when it is imported: nothing in this process may import it before."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install -e '.[dev]')")
    assert "ray" not in sys.modules, "ray was imported before its token was set"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")       # Ray's socket paths must stay short
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    # The workers import the synthetic sweep above from this folder.
    # Its workers compute with the MKL kernels the scripts choose (they re-execute themselves with
    # mnog.mkl's library; Ray's workers cannot), whether or not pytest ran under make.
    env = {**os.environ, **auth, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
           "LD_PRELOAD": mkl.ld_preload()}
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                             "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
                             "--temp-dir", temp], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        for line in head.stdout:
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail("ray start did not start")
        with pytest.MonkeyPatch.context() as mp:
            for name, value in auth.items():
                mp.setenv(name, value)                           # for drivers in this process and children
            yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)                        # --block: stops every process it started
        try:
            head.wait(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_cluster_stores_the_serial_records_and_retries_a_killed_worker(tmp_path, serial_records, ray_cluster):
    records = sweep(tmp_path, executors.Ray(ray_cluster, in_flight=2), crashes=((3.0, "once"),))
    assert stable(records) == serial_records
    assert (tmp_path / "crashed-3.0").exists()                   # its worker was killed; Ray re-ran the task
    keys = raw_keys(tmp_path / "records.jsonl")
    assert len(keys) == len(set(keys)) == 24
    assert {r["provenance"]["threads"] for r in records} == {1}


# -- the artifact scripts: Table 5's smoke sweep on every executor ---------------------------------

def run_table5(results, *args, env=()):
    """Table 5's smoke sweep at T = 10 and 100 (16 jobs), in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "artifact.table5_data_poisoning", "--profile", "smoke",
                           "--budgets", "10", "100", *args],
                          cwd=ROOT, env={**os.environ, "MNOG_RESULTS": str(results), **dict(env)},
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return stable(map(json.loads, (results / "table5" / "records.jsonl").read_text().splitlines())), proc


@pytest.fixture(scope="module")
def table5_serial(tmp_path_factory):
    """The serial sweep at 1 torch thread, the arithmetic of a worker on 2 cores with 2 workers
    (a different thread count changes float reductions in the last bits); θ* stays cached."""
    results = tmp_path_factory.mktemp("table5-serial")
    return results, run_table5(results, "--executor", "serial", env={"OMP_NUM_THREADS": "1"})[0]


@pytest.mark.slow
def test_table5_smoke_sweep_on_two_local_workers_stores_the_serial_records(tmp_path, table5_serial):
    results, serial = table5_serial
    shutil.copytree(results / "cache", tmp_path / "cache")
    records, proc = run_table5(tmp_path, "--workers", "2")
    assert records == serial and len(records) == 64
    assert "16 of 16 jobs to run (local, 2 worker process(es)" in proc.stdout and "16/16" in proc.stderr
    assert "poisoned models θ*" not in proc.stderr                  # θ* came from the cache, in every process


@pytest.mark.slow
def test_table5_smoke_sweep_with_two_workers_per_core_stores_the_serial_records(tmp_path, table5_serial):
    results, serial = table5_serial
    shutil.copytree(results / "cache", tmp_path / "cache")
    records, proc = run_table5(tmp_path, "--workers-per-gpu", "2")
    assert records == serial and "worker process(es), 2 per core" in proc.stdout


@pytest.mark.slow
def test_table5_smoke_sweep_on_a_ray_cluster_stores_the_serial_records(tmp_path, table5_serial, ray_cluster):
    results, serial = table5_serial
    shutil.copytree(results / "cache", tmp_path / "cache")
    records, proc = run_table5(tmp_path, "--executor", "ray", "--address", ray_cluster)
    assert records == serial
    assert "16 of 16 jobs to run (ray, 2 CPU(s) in the cluster)" in proc.stdout
