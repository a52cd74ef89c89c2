"""Where model work runs: in the caller's thread (the default), or on one compute thread (servers).

Spiking neurons keep membrane state during a forward pass, so model work runs one job at a time:
:func:`run` holds a process-wide lock. Concurrent calls from several threads are safe and give what
the same calls give one by one. The pipeline runs each of its calls, and each step of a
generation, as one job, so concurrent generations interleave step by step.

A server that calls the pipeline from many threads calls :func:`start` before it loads a model (the
studio does): every job then runs on one thread, ``sd-compute``, while its caller waits. Why it
matters on the CPU: PyTorch runs an op on more than about 32k numbers in parallel through OpenMP
(libgomp in the pip wheels), which keeps a pool of worker threads for every thread that has run
such an op. Once libgomp manages more threads than the machine has cores, its workers sleep
between ops instead of spinning, and every op pays a wake-up. Measured on 2 cores
(``python benchmarks/bench_threads.py``): an in-place op on 100k floats took 97.7 us from a second
thread against 8.7 us from the only one, and 16 images of ``assets/mnist`` 6.2 s when the model
was loaded in one thread and sampled in another, against 2.6 s with every job on one thread.

A job keeps its caller's grad mode (``torch.inference_mode``, ``torch.no_grad``) and thread count
(``torch.set_num_threads``); other per-thread settings (``torch.autocast``, the current CUDA device
or stream) are not carried to the compute thread. A job that calls :func:`run` (the pipeline calling
itself) runs it at once, in place. A job must not wait for another thread that calls :func:`run`:
that call waits behind it.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable

import torch

_LOCK = threading.RLock()        # one job at a time, on whichever thread runs it
_START = threading.Lock()        # start() / stop()
_worker: "_ComputeThread | None" = None
_in_job = threading.local()      # .depth: how many jobs this thread is running (nested: run in place)

THREAD_NAME = "sd-compute"


def run(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)`` as one job: on the compute thread when :func:`start` was called (the
    caller waits), else in the caller's thread; one job at a time either way. Returns its result,
    raises its exception."""
    worker = _worker
    if worker is None or getattr(_in_job, "depth", 0):
        return _run_here(fn, args, kwargs)
    return worker.submit(fn, args, kwargs)


def _run_here(fn, args, kwargs) -> Any:
    with _LOCK:
        _in_job.depth = getattr(_in_job, "depth", 0) + 1
        try:
            return fn(*args, **kwargs)
        finally:
            _in_job.depth -= 1


def start() -> None:
    """Run every later job on one compute thread (``sd-compute``; idempotent). Call it before loading a
    model, so that no other thread has run the model's parallel ops."""
    global _worker
    with _START:
        if _worker is None:
            _worker = _ComputeThread()


def stop() -> None:
    """Back to running jobs in their callers' threads, once the compute thread has finished the jobs
    it was given (idempotent). Raises RuntimeError when called from a job."""
    global _worker
    if getattr(_in_job, "depth", 0):
        raise RuntimeError("compute.stop() was called from a job: it waits for the jobs to finish")
    with _START:
        worker, _worker = _worker, None
    if worker is not None:
        worker.close()


def started() -> bool:
    """Whether jobs run on the compute thread (:func:`start`)."""
    return _worker is not None


def _after_fork_in_child() -> None:
    """A forked child has no compute thread (only the forking thread is copied) and may have copied
    a held lock: it starts afresh, running jobs in their callers' threads."""
    global _worker, _LOCK, _START, _in_job
    _worker, _LOCK, _START, _in_job = None, threading.RLock(), threading.Lock(), threading.local()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Job:
    """One call waiting for the compute thread, with its caller's grad mode and thread count."""

    def __init__(self, fn, args, kwargs):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.grad, self.inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        self.threads = torch.get_num_threads()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def __call__(self) -> None:
        try:
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
            with torch.inference_mode(self.inference), torch.set_grad_enabled(self.grad):
                self.result = _run_here(self.fn, self.args, self.kwargs)
        except BaseException as e:   # handed to the caller, who raises it
            self.error = e
        finally:
            self.done.set()


class _ComputeThread:
    """The thread that runs the jobs, in the order they came. Every job is either queued before
    :meth:`close`'s end mark (and run) or, once closed, run by its caller."""

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._submit_lock = threading.Lock()   # queueing a job and closing do not interleave
        self.closed = False
        self.thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self.thread.start()

    def submit(self, fn, args, kwargs) -> Any:
        job = _Job(fn, args, kwargs)
        with self._submit_lock:
            queued = not self.closed
            if queued:
                self.jobs.put(job)
        if not queued:               # stop() came first: the caller runs it
            return _run_here(fn, args, kwargs)
        job.done.wait()
        if job.error is not None:
            try:
                raise job.error
            finally:
                job = None   # no reference cycle through the traceback
        return job.result

    def _serve(self) -> None:
        while (job := self.jobs.get()) is not None:
            job()

    def close(self) -> None:
        with self._submit_lock:
            self.closed = True
            self.jobs.put(None)
        self.thread.join()
