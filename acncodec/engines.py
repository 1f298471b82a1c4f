"""Where shards are coded: in this process, in worker processes on this machine, or on a Ray cluster.

One interface: `engine.run(task, jobs, done)` runs `task(model, job)` for every job and calls `done(i, result)`
in the calling process as each result comes in, in any order. A task is a module-level function of this
module (it travels by name); the model travels once per worker process as its file's bytes and is loaded
there once, by its hash. A worker that dies (killed, out of memory) has its jobs run again, up to RETRIES
times; an error a task raises itself (AcnError: the data or the archive is at fault) is not retried.
The results do not depend on the engine or the number of workers: each shard is coded on its own.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

import numpy as np

from .errors import AcnError
from .modelfile import Model

#: Times the jobs of a dead worker are started again before the run gives up.
RETRIES = 3

_MODELS: dict[str, Model] = {}   # per worker process: the models loaded, by hash


# ------------------------------------------------------------------------------------------ tasks
def compress_shard(model: Model, job: dict) -> dict:
    """Code one shard as a version 2 archive without names or versions. Returns its bytes, its archive
    order (positions in the job's images) and the report."""
    from .codec import compress_archive
    from .data import ImageSet
    images = ImageSet(job["images"], job["levels"], None, job["source"])
    archive, report, sequence = compress_archive(images, model, job["order"], job["chains"], progress=False,
                                                 estimate=job["estimate"], versions={})
    return {"bytes": archive.to_bytes(), "sequence": np.asarray(sequence, dtype=np.int64), "report": report}


def decompress_shard(model: Model, job: dict) -> dict:
    """Decode one shard (a version 2 archive): its images (archive order, output levels) and their levels."""
    from .archive import parse
    from .codec import decompress
    images, _ = decompress(parse(job["bytes"], job["where"]), model, where=job["where"], progress=False,
                           input_levels=False)
    return {"images": images.images, "levels": images.levels}


TASKS = {"compress": compress_shard, "decompress": decompress_shard}


def _model(digest: str, load: Callable[[], bytes]) -> Model:
    if digest not in _MODELS:
        from .modelfile import from_bytes
        model = from_bytes(load(), f"model {digest[:12]}")
        if model.hash != digest:
            raise AcnError(f"model {digest[:12]} arrived damaged in a worker (its hash is {model.hash[:12]})")
        _MODELS[digest] = model
    return _MODELS[digest]


# ------------------------------------------------------------------------------------------ engines
class InProcess:
    """Jobs one after another in this process (one shard, or --workers 1)."""
    name = "this process"

    def __init__(self, model: Model):
        self.model = model

    def run(self, task: str, jobs, done: Callable[[int, dict], None]) -> None:
        for i in range(len(jobs)):
            done(i, TASKS[task](self.model, jobs[i]))

    def close(self) -> None:
        pass


def _init_local(digest: str, blob: bytes, threads: int) -> None:
    # The cores are shared out among the workers: W workers must not each start a BLAS pool as wide as the
    # machine, whose threads then wait on each other. Results do not depend on it (the exact numerics are
    # exact whatever the threads; the float numerics pin their own).
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    _model(digest, lambda: blob)


def _run_local(task: str, digest: str, job: dict) -> dict:
    return TASKS[task](_MODELS[digest], job)


class LocalProcesses:
    """Jobs in `workers` processes on this machine. Processes are spawned (not forked) so that no thread
    state of the caller (torch's, faiss') is copied into them; each loads the model once."""

    def __init__(self, model: Model, workers: int):
        from .modelfile import to_bytes
        self.model, self.workers = model, workers
        self.blob, _ = to_bytes(model)
        self.name = f"{workers} worker processes"
        self.restarts = 0

    def _pool(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_local, initargs=(self.model.hash, self.blob, threads))

    def run(self, task: str, jobs, done: Callable[[int, dict], None]) -> None:
        pending = list(range(len(jobs)))     # not yet finished, in submission order
        while pending:
            pool, queue, futures = self._pool(), list(pending), {}
            try:
                # A few jobs ahead of the workers, not all: each job holds a shard's images.
                while queue or futures:
                    while queue and len(futures) < 2 * self.workers:
                        i = queue.pop(0)
                        futures[pool.submit(_run_local, task, self.model.hash, jobs[i])] = i
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for f in finished:
                        i = futures.pop(f)
                        done(i, f.result())   # an AcnError from the task is raised here, not retried
                        pending.remove(i)
            except BrokenProcessPool:
                # A worker died: every job not finished runs again in a new pool. The survivors are stopped
                # here: before Python 3.12 a broken pool joins them without telling them to exit, and a survivor
                # waiting for its next job then blocks the shutdown below forever.
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    if process.is_alive():
                        process.kill()
                self.restarts += 1
                if self.restarts > RETRIES:
                    raise AcnError(f"worker processes died {self.restarts} times; giving up (is memory short? "
                                   f"try fewer --workers or smaller shards)") from None
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass


def _run_ray(task: str, digest: str, blob_ref: list, job: dict) -> dict:
    import ray
    return TASKS[task](_model(digest, lambda: ray.get(blob_ref[0])), job)


class RayCluster:
    """Jobs as Ray tasks on an existing cluster (`ray start --head ...`; ADDRESS as host:port). The model
    goes into the cluster's object store once; each worker process fetches and loads it once, by hash. Ray
    runs a task again when its worker dies (max_retries). Every node needs this acncodec installed."""

    def __init__(self, model: Model, address: str):
        try:
            import ray
        except ImportError:
            raise AcnError("--cluster needs Ray: pip install 'acncodec[cluster]'") from None
        from .modelfile import to_bytes
        self.ray, self.model = ray, model
        reachable(address)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
        except Exception as e:   # ConnectionError, or Ray's own for a bad address
            raise AcnError(f"cannot reach a Ray cluster at {address}: {str(e).splitlines()[0] if str(e) else e}") \
                from None
        self.blob_ref = ray.put(to_bytes(model)[0])
        self.remote = ray.remote(max_retries=RETRIES)(_run_ray)
        self.name = f"the Ray cluster at {address}"

    def run(self, task: str, jobs, done: Callable[[int, dict], None]) -> None:
        ray = self.ray
        window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))   # jobs in flight: each holds a shard
        queue, refs = list(range(len(jobs))), {}
        while queue or refs:
            while queue and len(refs) < window:
                i = queue.pop(0)
                refs[self.remote.remote(task, self.model.hash, [self.blob_ref], jobs[i])] = i
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                i = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, AcnError):
                        raise AcnError(str(cause)) from None
                    raise
                except ray.exceptions.WorkerCrashedError:
                    raise AcnError(f"a Ray worker died {RETRIES + 1} times on shard {i}; giving up") from None
                done(i, result)

    def close(self) -> None:
        self.ray.shutdown()


def reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once, in one line, when nothing listens at HOST:PORT (Ray itself would retry for minutes)."""
    import socket
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise AcnError(f"--cluster {address!r}: give the head node as HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise AcnError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from None


def engine_for(model: Model, workers: int, cluster: str | None, jobs: int):
    """The engine for `jobs` shards: a cluster when given, else up to `workers` local processes (none for one
    job: it runs here)."""
    if cluster:
        return RayCluster(model, cluster)
    workers = min(workers, jobs)
    return InProcess(model) if workers <= 1 else LocalProcesses(model, workers)
