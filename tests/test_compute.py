"""Where model work runs (spiking_diffusion.compute): in the caller's thread, or all of it on one thread."""
import multiprocessing
import threading
import time

import numpy as np
import pytest
import torch

from spiking_diffusion import compute
from spiking_diffusion import diffusion as D


def where() -> str:
    return threading.current_thread().name


def in_thread(fn):
    """fn() in a new thread named "caller" -> its result (or raises its exception)."""
    out = {}

    def work():
        try:
            out["value"] = fn()
        except BaseException as e:  # raised below
            out["error"] = e
    th = threading.Thread(target=work, name="caller", daemon=True)
    th.start()
    th.join(timeout=60)
    assert not th.is_alive(), "the call did not return within 60 s (a dead-lock?)"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_jobs_run_in_the_callers_thread_until_started(compute_mode):
    on = in_thread(lambda: compute.run(where))
    assert on == ("caller" if compute_mode == "caller's thread" else compute.THREAD_NAME)


def test_a_job_keeps_its_callers_modes_and_thread_count(compute_mode):
    def modes():
        return torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.get_num_threads()

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert compute.run(modes) == (True, False, 1)
        with torch.no_grad():
            assert compute.run(modes) == (False, False, 1)
        with torch.inference_mode():
            assert compute.run(modes)[1] is True
        # a tensor made by a job outside inference mode can be trained
        w = compute.run(lambda: torch.ones(3, requires_grad=True))
        (w * 2).sum().backward()
        assert torch.equal(w.grad, torch.full((3,), 2.0))
    finally:
        torch.set_num_threads(threads)


def test_a_jobs_error_reaches_its_caller_and_a_nested_job_runs_at_once(compute_mode):
    def fails():
        raise ValueError("bad input: 3 is not accepted")

    with pytest.raises(ValueError, match="3 is not accepted"):
        in_thread(lambda: compute.run(fails))
    # a job that starts a job (the pipeline calling itself) runs it in place, not behind itself
    assert in_thread(lambda: compute.run(lambda: compute.run(where))) == in_thread(lambda: compute.run(where))
    assert compute.run(lambda: 41 + 1) == 42                 # the compute thread still serves


def test_stop_lets_queued_jobs_finish_and_later_ones_run_in_their_callers():
    before = compute.started()
    try:
        compute.start()
        compute.start()                                       # idempotent: one thread
        assert [t.name for t in threading.enumerate()].count(compute.THREAD_NAME) == 1
        running, release, finished, got = threading.Event(), threading.Event(), threading.Event(), []

        def first():
            running.set()
            release.wait(30)
            finished.set()
            return where()
        callers = [threading.Thread(target=lambda: got.append(compute.run(first)), daemon=True)]
        callers[0].start()
        assert running.wait(30)
        callers.append(threading.Thread(target=lambda: got.append(compute.run(where)), daemon=True))
        callers[1].start()                                    # queued behind the first
        time.sleep(0.2)
        threading.Timer(0.2, release.set).start()
        compute.stop()                                        # returns once the queued jobs ran
        assert finished.is_set() and not compute.started()
        for th in callers:
            th.join(timeout=30)
        assert got == [compute.THREAD_NAME, compute.THREAD_NAME]
        assert in_thread(lambda: compute.run(where)) == "caller"
    finally:
        (compute.start if before else compute.stop)()


def test_a_job_cannot_stop_the_compute_thread(compute_mode):
    with pytest.raises(RuntimeError, match="called from a job"):
        compute.run(compute.stop)
    assert compute.started() == (compute_mode == "compute thread")


def test_a_job_running_when_the_compute_thread_starts_runs_its_nested_jobs_in_place():
    """A job running in its caller's thread when another thread starts the compute thread runs the
    jobs it asks for in place (queued, they would wait for the lock it holds: a dead-lock)."""
    compute.stop()
    inside, started = threading.Event(), threading.Event()

    def outer():
        inside.set()
        assert started.wait(30)
        return compute.run(where)                             # nested: in place

    def start_when_inside():
        inside.wait(30)
        compute.start()
        started.set()
    try:
        threading.Thread(target=start_when_inside, daemon=True).start()
        assert in_thread(lambda: compute.run(outer)) == "caller"
    finally:
        compute.stop()


def test_a_forked_child_runs_jobs_without_the_parents_compute_thread(compute_mode):
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_child_job).get(timeout=60) == (False, "MainThread")


def _child_job():
    return compute.started(), compute.run(where)


def test_an_interrupted_wait_closes_the_steps_after_the_running_one(tiny_pipeline):
    """Ctrl-C while a step runs on the compute thread: the caller gets KeyboardInterrupt (not an error
    from closing a generator that is still running), and the steps are closed by a job after it."""
    from spiking_diffusion.sampling import SamplerConfig

    busy, jobs = threading.Lock(), []

    def run(fn, *args):   # a compute thread whose first step is still running when the wait is cut
        jobs.append(fn)
        if len(jobs) == 1:
            th = threading.Thread(target=lambda: busy.acquire() and (fn(*args), busy.release()), daemon=True)
            th.start()
            time.sleep(0.1)
            raise KeyboardInterrupt
        with busy:        # the close waits for the step, as a queued job does
            return fn(*args)
    with pytest.raises(KeyboardInterrupt):
        slow = lambda x, t: time.sleep(0.5) or tiny_pipeline.denoiser_logits(x, t)   # noqa: E731
        tiny_pipeline.scheduler.sample(slow, 2, 4, SamplerConfig(),
                                       torch.Generator().manual_seed(0), run=run)
    assert len(jobs) == 2 and getattr(jobs[1], "__name__", "") == "close"


def test_a_generations_tensor_work_runs_on_the_compute_thread_and_its_callback_in_the_callers(
        tiny_pipeline, compute_mode, monkeypatch):
    """Every step's work (the denoiser, the draws: ``nucleus`` runs once a step) and the decoding are
    jobs; the callback runs between them in the thread that called the pipeline."""
    seen = {"denoise": set(), "nucleus": set(), "decode": set(), "callback": set()}

    def spy(kind, fn):
        def call(*a, **k):
            seen[kind].add(where())
            return fn(*a, **k)
        return call
    monkeypatch.setattr(D, "nucleus", spy("nucleus", D.nucleus))
    monkeypatch.setattr(tiny_pipeline, "_fast_call", spy("denoise", tiny_pipeline._fast_call))
    monkeypatch.setattr(tiny_pipeline.vqsvae, "decode", spy("decode", tiny_pipeline.vqsvae.decode))
    out = in_thread(lambda: tiny_pipeline(2, 5, seed=3, corrector_steps=2,
                                          callback=lambda s: seen["callback"].add(where())))
    job = "caller" if compute_mode == "caller's thread" else compute.THREAD_NAME
    assert seen == {"denoise": {job}, "nucleus": {job}, "decode": {job}, "callback": {"caller"}}
    compute.stop()
    same = tiny_pipeline(2, 5, seed=3, corrector_steps=2)     # the same images either way
    assert np.array_equal(out.tokens, same.tokens) and np.array_equal(out.images, same.images)


def test_a_raising_callback_or_step_reaches_the_caller_and_the_next_generation_is_unchanged(
        tiny_pipeline, compute_mode, monkeypatch):
    """The studio's Stop raises in the callback; a failing denoiser raises in a step job: either
    reaches the caller, the compute thread serves on, and the next generation is what it would be."""
    expected = tiny_pipeline(2, 6, seed=4)

    def stop_at_3(state):
        if state.index == 3:
            raise InterruptedError("stopped by the user")
    with pytest.raises(InterruptedError, match="stopped by the user"):
        in_thread(lambda: tiny_pipeline(2, 6, seed=4, callback=stop_at_3))
    calls = []

    def failing(*a):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("denoiser failed")
        return denoise(*a)
    denoise = tiny_pipeline._denoise
    monkeypatch.setattr(tiny_pipeline, "_denoise", failing)
    with pytest.raises(RuntimeError, match="denoiser failed"):
        in_thread(lambda: tiny_pipeline(2, 6, seed=4))
    monkeypatch.undo()
    again = in_thread(lambda: tiny_pipeline(2, 6, seed=4))
    assert np.array_equal(again.tokens, expected.tokens) and np.array_equal(again.images, expected.images)
