"""Where a sweep's jobs run: in this process, in a local process pool, or on a Ray cluster.

    python -m artifact.table5_data_poisoning                          # local: one worker per core (or GPU)
    python -m artifact.table5_data_poisoning --workers 4              # local, 4 worker processes
    python -m artifact.table5_data_poisoning --executor ray --address HOST:PORT   # an existing Ray cluster
    python -m artifact.table5_data_poisoning --executor serial        # in this process (debugging)

An executor runs `fn(*args)` for a list of argument tuples and yields each result as it
arrives, in any order; the caller (`mnog.sweep.run_sweep`, the driver) is the only writer of
the record store. Every backend gives the same results: a job's seed is derived from its key,
never from where or when it runs.

- serial: in the driver itself, one job after the other.
- local: a spawn-started process pool on this machine. One worker per visible GPU (each pinned
  by CUDA_VISIBLE_DEVICES) when the jobs use a GPU, else one per CPU core, or N per device with
  --workers-per-gpu N; each worker gets cores / workers torch threads. A worker that dies (killed, out of memory, segfault) costs
  only the jobs in flight: the pool is restarted and those jobs run again, one at a time, so
  that a job that kills its worker every time is told apart from its neighbours and given up
  after `retries` attempts.
- ray: one task per job on a Ray cluster (one GPU each when the jobs use a GPU, else one CPU),
  retried by Ray up to `retries` times when its worker dies. Ray is optional:
  `pip install 'mnog[ray]'`.
"""
from __future__ import annotations

import collections
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import socket
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from mnog.config import field
from mnog.errors import UserError
from mnog.results import RESULTS, ROOT

EXECUTORS = ("local", "ray", "serial")
RETRIES = 3  # as Ray's default max_retries

# One result of `Executor.map_unordered`: (index of the arguments, result, error); exactly
# one of result and error is None (a job may also return None).
Result = tuple[int, Any, BaseException | None]


@dataclass(frozen=True)
class ExecutorConfig:
    """Where a sweep's jobs run: the command-line options every sweeping artifact script takes
    beside its own configuration (mnog.config.parse_config); they never change a record."""
    executor: str = field("local", "where the sweep's jobs run: local (a process pool on this machine), "
                                   "ray (a Ray cluster) or serial (in this process)", choices=EXECUTORS)
    workers: int = field(0, "local: worker processes (0: one per visible GPU when the jobs use one, else one "
                            "per CPU core); ray: most jobs in flight (0: no limit)")
    address: str = field("", "ray: the cluster's HOST:PORT (empty: $RAY_ADDRESS if set, else a new local Ray)")
    workers_per_gpu: int = field(1, "sweep jobs in flight per device: local, N worker processes per visible GPU "
                                    "(per CPU core when the jobs run on the CPU); ray, each task takes 1/N of a GPU "
                                    "(or CPU)", minimum=1)

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; choose one of {', '.join(EXECUTORS)}")
        if not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers must be an integer ≥ 0 (0: automatic), got {self.workers!r}")
        if self.address and self.executor != "ray":
            raise ValueError(f"--address {self.address} names a Ray cluster; it needs --executor ray")
        if self.address:
            host, _, port = self.address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"--address {self.address!r} is not HOST:PORT (e.g. 10.0.0.1:6379)")
        if self.executor == "serial" and self.workers > 1:
            raise ValueError("the serial executor runs in this process; --workers > 1 needs --executor local")
        if not isinstance(self.workers_per_gpu, int) or self.workers_per_gpu < 1:
            raise ValueError(f"--workers-per-gpu must be at least 1, got {self.workers_per_gpu!r}")
        if self.executor == "serial" and self.workers_per_gpu > 1:
            raise ValueError("the serial executor runs one job at a time; --workers-per-gpu > 1 needs --executor "
                             "local or ray")
        if self.executor == "local" and self.workers and self.workers_per_gpu > 1:
            raise ValueError(f"--workers {self.workers} sets the local pool's size; give it or --workers-per-gpu, "
                             "not both")

    def check_reachable(self) -> None:
        """ExecutorError at once when the Ray cluster named (--address or $RAY_ADDRESS) does not answer."""
        address = self.address or os.environ.get("RAY_ADDRESS", "auto")
        if self.executor == "ray" and address != "auto":
            reachable(address)


def from_config(cfg: ExecutorConfig, gpu: bool) -> "Executor":
    """The executor `cfg` names; `gpu`: whether the jobs run on a CUDA device."""
    if cfg.executor == "serial":
        return Serial()
    if cfg.executor == "local":
        return Local(cfg.workers, gpus=visible_gpus() if gpu else None, per_device=cfg.workers_per_gpu)
    return Ray(cfg.address, gpu=gpu, in_flight=cfg.workers, per_device=cfg.workers_per_gpu)


def job_device(cfg: ExecutorConfig, device: torch.device) -> str:
    """The device jobs run on, as the driver chose it: pooled and Ray workers see one GPU
    each, as "cuda"; serial jobs run on the driver's own device."""
    return "cuda" if device.type == "cuda" and cfg.executor != "serial" else str(device)


def visible_gpus() -> list[str]:
    """The ids a worker can be pinned to: $CUDA_VISIBLE_DEVICES' entries, else 0 ... n-1."""
    count = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def cpu_cores() -> int:
    """Cores this process may use (a Slurm allocation or taskset, not the whole machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ExecutorError(UserError):
    """An executor cannot start: Ray is missing, its cluster unreachable or without GPUs."""


def reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when nothing listens at a Ray cluster's HOST:PORT (ray.init
    itself retries for half a minute and then prints three chained tracebacks)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"the Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (is `ray start "
                            f"--head` running there, and the port open?)") from None


class WorkerDied(RuntimeError):
    """A job whose worker process died on every attempt."""


class Executor:
    name = "executor"
    workers = 1
    restarts = 0  # worker losses survived so far (local)

    def start(self) -> None:
        """Start the workers (or connect to them); `map_unordered` does it when first needed."""

    def map_unordered(self, fn: Callable, items: Sequence[tuple]) -> Iterator[Result]:
        """Yield (index, fn(*items[index]), None), or (index, None, the error), as each job ends."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self, cancel: bool = False) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.close(cancel=kind is not None)


class Serial(Executor):
    """Every job in this process, in order."""
    name = "serial"

    def map_unordered(self, fn, items):
        for index, args in enumerate(items):
            try:
                result = fn(*args)
            except Exception as exc:  # noqa: BLE001  (reported by the caller; KeyboardInterrupt stops the sweep)
                yield index, None, exc
                continue
            yield index, result, None


# ---------------------------------------------------------------------------------------
# local: a process pool
# ---------------------------------------------------------------------------------------

class Local(Executor):
    """A pool of `workers` spawn-started processes (0: `per_device` per GPU in `gpus`, else
    `per_device` per core). Several workers per GPU keep several jobs in flight on it (the
    image experiments' jobs are too small to fill a large GPU alone); on the CPU they share
    the cores, each with cores / workers torch threads (at least one)."""
    name = "local"

    def __init__(self, workers: int = 0, gpus: Sequence[str] | None = None, retries: int = RETRIES,
                 per_device: int = 1):
        if workers < 0:
            raise ValueError(f"workers must be ≥ 0 (0: automatic), got {workers}")
        if per_device < 1:
            raise ValueError(f"per_device must be ≥ 1, got {per_device}")
        self.gpus = list(gpus or [])
        self.per_device = per_device
        self.workers = workers or per_device * (len(self.gpus) or cpu_cores())
        self.threads = max(1, cpu_cores() // self.workers)
        self.retries = retries
        self.restarts = 0
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        where = f"GPUs {','.join(self.gpus)}" if self.gpus else f"{self.threads} torch thread(s) each"
        shared = f", {self.per_device} per {'GPU' if self.gpus else 'core'}" if self.per_device > 1 else ""
        return f"local, {self.workers} worker process(es){shared}, {where}"

    def start(self) -> None:
        self._pool = self._pool or self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: a forked child would inherit the driver's CUDA context and threads.
        context = multiprocessing.get_context("spawn")
        devices = None
        if self.gpus:  # one id per worker, round robin; each worker takes one as it starts
            devices = context.Queue()
            for i in range(self.workers):
                devices.put(self.gpus[i % len(self.gpus)])
        pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                   initargs=(devices, self.threads))
        # Start every worker with an empty task first: a pool whose workers cannot start
        # (an import error, no `if __name__ == "__main__":` guard) fails here, not as a job.
        try:
            for started in [pool.submit(os.getpid) for _ in range(self.workers)]:
                started.result()
        except BrokenProcessPool as exc:
            pool.shutdown()
            raise RuntimeError("the local executor's worker processes died while starting (their error is "
                               "printed above); --executor serial runs the jobs in this process") from exc
        return pool

    def map_unordered(self, fn, items):
        items = list(items)
        if items:
            _check_picklable(fn, items[0])
        todo = collections.deque(range(len(items)))
        suspects = collections.deque()  # in flight when a worker died: rerun one at a time
        attempts = collections.Counter()
        running = {}
        try:
            while todo or suspects:
                self.start()
                broken = False
                while (todo or suspects or running) and not broken:
                    # At most one job per worker in flight, so a dead worker's jobs are known; a
                    # suspect runs alone. A job is dequeued only once submitted: a pool that broke
                    # since the last wait refuses it, and it stays queued.
                    queue = suspects if suspects else todo
                    try:
                        while queue and len(running) < (1 if queue is suspects else self.workers):
                            future = self._pool.submit(fn, *items[queue[0]])
                            running[future] = queue.popleft()
                    except BrokenProcessPool:
                        broken = True
                    if running:
                        done, _ = wait(running, return_when=FIRST_COMPLETED)
                    else:
                        done = set()
                    if broken or any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                        broken = True
                        done, _ = wait(running)  # the pool fails every job it still held at once
                    alone = len(running) == 1
                    lost = []
                    for future in done:
                        index = running.pop(future)
                        error = future.exception()
                        if isinstance(error, BrokenProcessPool):
                            lost.append(index)
                        else:
                            yield index, None if error else future.result(), error
                    if not broken:
                        continue
                    self._pool.shutdown(wait=True)
                    self._pool = None
                    self.restarts += 1
                    if alone and lost:  # it ran by itself: its job killed the worker, or the worker was killed
                        attempts[lost[0]] += 1
                        if attempts[lost[0]] > self.retries:
                            yield lost[0], None, WorkerDied(f"the worker process died on all {attempts[lost[0]]} "
                                                            f"attempts of this job")
                            lost = []
                    suspects.extendleft(sorted(lost, reverse=True))
        finally:
            for future in running:
                future.cancel()

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            self._pool = None


def _init_worker(devices, threads: int) -> None:
    """Runs first in every worker process, before any job and before CUDA is initialized."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.get()
    torch.set_num_threads(threads)
    # A worker outlives a killed driver otherwise (its end of the job queue keeps the queue
    # open): exit, mid-job, as soon as the driver is gone; no one is left to store the result.
    threading.Thread(target=_exit_with_driver, args=(multiprocessing.parent_process().sentinel,), daemon=True).start()


def _exit_with_driver(sentinel) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _check_picklable(fn: Callable, args: tuple) -> None:
    try:
        pickle.dumps((fn, args))
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise TypeError(f"worker processes need jobs they can unpickle ({exc}); use a mnog.sweep.Runner of "
                        f"module-level functions, or --executor serial") from exc


# ---------------------------------------------------------------------------------------
# ray: tasks on a Ray cluster
# ---------------------------------------------------------------------------------------

class Ray(Executor):
    """Tasks on the Ray cluster at `address` ("": $RAY_ADDRESS, else a new local instance).

    Workers must import this repository's code and read the driver's results folder (the
    trained models' cache) at the same paths: a shared file system on a cluster."""
    name = "ray"

    def __init__(self, address: str = "", gpu: bool = False, in_flight: int = 0, retries: int = RETRIES,
                 per_device: int = 1):
        try:
            import ray
        except ImportError:
            raise ExecutorError("--executor ray needs Ray: pip install 'mnog[ray]' (or 'ray>=2.40')") from None
        self.ray = ray
        self.address, self.gpu, self.in_flight, self.retries = address, gpu, in_flight, retries
        self.per_device = per_device  # tasks share a GPU (or CPU): each takes 1 / per_device of one
        ExecutorConfig("ray", address=address).check_reachable()             # now, not after the models train
        self._owner = False  # whether this executor called ray.init (and so calls ray.shutdown)

    def start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            # Workers read nothing but the trained-model cache, under the driver's results
            # folder, and import this repository's code, both at the driver's paths; they
            # show no progress bars of their own.
            env = {"MNOG_RESULTS": str(RESULTS), "PYTHONPATH": f"{ROOT}{os.pathsep}${{PYTHONPATH}}",
                   "TQDM_DISABLE": "1"}
            address = self.address or os.environ.get("RAY_ADDRESS", "")
            try:
                ray.init(address=self.address or None, logging_level=logging.WARNING, runtime_env={"env_vars": env})
            except (ConnectionError, RuntimeError, ValueError) as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ExecutorError(f"cannot connect to the Ray cluster at {address or 'a new local instance'}: "
                                    f"{reason}") from None
            self._owner = True
        self.workers = int(ray.cluster_resources().get("GPU" if self.gpu else "CPU", 0)) * self.per_device
        if self.gpu and not self.workers:
            raise ExecutorError("the jobs run on a GPU but the Ray cluster has none; pass --device cpu or add GPU nodes")

    def describe(self) -> str:
        self.start()
        kind = "GPU" if self.gpu else "CPU"
        if self.per_device > 1:
            return f"ray, {self.workers // self.per_device} {kind}(s) in the cluster, {self.per_device} tasks per {kind}"
        return f"ray, {self.workers} {kind}(s) in the cluster"

    def map_unordered(self, fn, items):
        if not items:
            return
        self.start()
        ray = self.ray
        share = 1 / self.per_device
        task = ray.remote(fn).options(max_retries=self.retries,
                                      **({"num_gpus": share} if self.gpu else {"num_cpus": share}))
        todo = collections.deque(range(len(items)))
        running = {}
        try:
            while todo or running:
                while todo and (not self.in_flight or len(running) < self.in_flight):
                    index = todo.popleft()
                    running[task.remote(*items[index])] = index
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    index = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001  (the task raised, or its worker died `retries` times)
                        yield index, None, exc
                        continue
                    yield index, result, None
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def close(self, cancel: bool = False) -> None:
        if self._owner and self.ray.is_initialized():
            self.ray.shutdown()
