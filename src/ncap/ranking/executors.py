"""Where candidates run: in this process one after another, or as Ray tasks on a cluster.

An executor takes the names still to run and yields each candidate's record as it finishes; the
caller (:func:`ncap.ranking.rank.rank`) writes every record atomically the moment it arrives, so the
output files and the resume behaviour are the same whichever executor ran the candidates.

- :class:`LocalExecutor` (the default; needs nothing but torch): in-process, in order, with a
  per-step progress bar.
- :class:`RayExecutor`: one Ray task per candidate, on a running cluster (``address``) or a local
  Ray instance it starts (and stops) itself. The dataset is put in Ray's object store once. Each task
  asks for ``cpus_per_candidate`` CPUs and ``gpus_per_candidate`` GPUs; with a GPU, ``device="auto"``
  runs the candidate on the GPU Ray assigned. The workers must be able to import ncap (and any
  ``py:`` model factories): install it on the cluster, or pass a Ray ``runtime_env``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from ncap.exceptions import ClusterUnreachable, ConfigError, MissingDependency, StorageError
from ncap.ranking.candidate import run_candidate
from ncap.ranking.jobs import CandidateJob
from ncap.results import failed_record

__all__ = [
    "CandidateJob",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "check_reachable",
    "make_executor",
]

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    name: str

    def run(
        self,
        names: Sequence[str],
        job: CandidateJob,
        *,
        on_start: Callable[[str], None],
        on_step: Callable[[int, int], None],
        log: Callable[[str], None] | None,
    ) -> Iterator[dict[str, Any]]: ...

    def describe(self) -> dict[str, Any]: ...


class LocalExecutor:
    """Run candidates one after another in this process."""

    name = "local"

    def run(self, names, job, *, on_start, on_step, log):
        for name in names:
            on_start(name)
            yield run_candidate(name, job, on_step=on_step, log=log)

    def describe(self) -> dict[str, Any]:
        return {"executor": "local"}


def _remote_candidate(name: str, job: CandidateJob) -> dict[str, Any]:
    """The body of a Ray task: one candidate, its record returned to the driver."""
    return run_candidate(name, job)


class RayExecutor:
    """Run candidates as Ray tasks (one per candidate).

    Parameters
    ----------
    address : str, optional
        A running cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None starts a
        local Ray instance for the run and stops it afterwards (unless Ray was already initialised).
    gpus_per_candidate, cpus_per_candidate : float
        The resource request of each task.
    runtime_env : dict, optional
        Ray runtime environment of the tasks (e.g. ``{"pip": ["ncap"]}``).
    connect_timeout : float
        Seconds to wait for the cluster at ``address`` to answer (a TCP connection to its port)
        before :class:`~ncap.exceptions.ClusterUnreachable`; Ray itself would wait minutes.
    max_retries : int
        How often Ray reruns a candidate whose worker or node died (a system failure: the task
        starts over on another node; its own errors are never retried, they fail the candidate).
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        gpus_per_candidate: float = 0.0,
        cpus_per_candidate: float = 1.0,
        runtime_env: dict[str, Any] | None = None,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
    ) -> None:
        if gpus_per_candidate < 0 or cpus_per_candidate <= 0:
            raise ConfigError(
                "gpus_per_candidate must be >= 0 and cpus_per_candidate > 0, got "
                f"{gpus_per_candidate} and {cpus_per_candidate}."
            )
        self.address = address
        self.gpus_per_candidate = gpus_per_candidate
        self.cpus_per_candidate = cpus_per_candidate
        self.runtime_env = runtime_env
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries

    def describe(self) -> dict[str, Any]:
        return {
            "executor": "ray",
            "address": self.address,
            "gpus_per_candidate": self.gpus_per_candidate,
            "cpus_per_candidate": self.cpus_per_candidate,
        }

    def run(self, names, job, *, on_start, on_step, log):
        check_reachable(self.address, self.connect_timeout)  # (before Ray's own long wait)
        try:
            import ray  # optional: ray (ncap[ray])
        except ImportError as err:
            raise MissingDependency(
                "the Ray executor needs Ray: pip install 'ncap[ray]' (or use --executor local)."
            ) from err
        started = not ray.is_initialized()
        if started:
            ray.init(
                address=self.address,
                runtime_env=self.runtime_env,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
            )
        try:
            cluster = ray.cluster_resources()
            if self.gpus_per_candidate > cluster.get("GPU", 0):
                raise ConfigError(
                    f"each candidate asks for {self.gpus_per_candidate:g} GPU(s) but the Ray cluster "
                    f"has {cluster.get('GPU', 0):g}; lower --gpus-per-candidate or add GPU nodes."
                )
            if log:
                log(
                    f"ray: {len(names)} candidate task(s) on a cluster with "
                    f"{cluster.get('CPU', 0):g} CPU(s) and {cluster.get('GPU', 0):g} GPU(s)"
                )
            task = ray.remote(
                num_cpus=self.cpus_per_candidate,
                num_gpus=self.gpus_per_candidate,
                max_retries=self.max_retries,  # (a lost worker or node: rerun elsewhere)
            )(_remote_candidate)
            job_ref = ray.put(job)  # the dataset goes to the object store once, not per task
            pending = {task.remote(name, job_ref): name for name in names}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        name = pending.pop(ref)
                        on_start(name)
                        try:
                            record = ray.get(ref)
                        except ray.exceptions.RayError as err:
                            cause = getattr(err, "cause", None)
                            if isinstance(cause, StorageError):  # the run's disk: stop the run
                                raise StorageError(str(cause)) from err
                            text = str(err).strip().splitlines()
                            record = failed_record(
                                name, f"the Ray task failed: {text[-1] if text else err}"
                            )
                        yield record
            finally:
                for ref in pending:  # interrupted: do not leave work running on the cluster
                    ray.cancel(ref, force=True)
        finally:
            if started:
                ray.shutdown()


def check_reachable(address: str | None, timeout: float) -> None:
    """:class:`ClusterUnreachable` unless ``address`` (``host:port`` or ``ray://host:port``)
    accepts a TCP connection within ``timeout`` seconds; None and ``auto`` are Ray's to find."""
    if address is None or address in ("auto", "local"):
        return
    where = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"the Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379, "
            "ray://10.0.0.5:10001 or auto)."
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        why = (
            f"no answer within {timeout:g} s"
            if isinstance(err, TimeoutError)
            else (err.strerror or str(err))
        )
        raise ClusterUnreachable(
            f"the Ray cluster at {address} cannot be reached ({why}); check "
            "the address and that the head node is running (`ray status` on it), or leave out "
            "--address to start a local Ray instance."
        ) from None


def make_executor(
    name: str,
    *,
    address: str | None = None,
    gpus_per_candidate: float = 0.0,
    cpus_per_candidate: float = 1.0,
) -> Executor:
    """``"local"`` or ``"ray"`` (with its options); ValueError for anything else."""
    if name == "local":
        if address is not None or gpus_per_candidate:
            raise ConfigError(
                "--address and --gpus-per-candidate apply to the Ray executor; add --executor ray."
            )
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(
            address=address,
            gpus_per_candidate=gpus_per_candidate,
            cpus_per_candidate=cpus_per_candidate,
        )
    raise ConfigError(f"unknown executor {name!r}; choose one of {EXECUTORS}.")
