"""The studio's generations: each one a :class:`Run` (images, tokens and the step-by-step trace
a session's views read), kept by a :class:`RunStore` so that memory stays bounded under sustained
traffic whatever Gradio keeps in its session states.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .media import InputError
from .memory import trim_free_memory

MAX_RUNS = 32               # generations kept across all sessions (the oldest are cleared first)
RUN_TTL_S = 3600            # a generation not looked at for this long is cleared


class GenerationStopped(Exception):
    """Raised inside the sampler's callback to stop a generation nobody waits for any more."""


@dataclass
class Run:
    """One generation, kept in the browser session's state and in the studio's :class:`RunStore`
    (which clears its arrays when the run expires or too many runs are kept)."""

    model: str
    images: np.ndarray | None   # uint8 [N, H, W, C]
    tokens: np.ndarray | None   # [N, h, w]
    trace: object               # GenerationTrace (int16 token ids)
    seconds: float
    frames: OrderedDict = field(default_factory=OrderedDict)  # (image, step) -> (committed, predicted) [H, W, C]
    whole: tuple | None = None  # (image, committed [S, H, W, C], predicted [S, H, W, C]): the last image played/exported
    animations: dict = field(default_factory=dict)           # image -> path of its Play GIF
    shown: tuple | None = None  # (image, step) the Unmasking view drew last
    seed: int | None = None     # the seed it was generated from (the status line names it)
    asked_at: float | None = None  # time.monotonic() of the Generate press that made it (Studio.run_superseded)
    guidance: float = 0.0      # the sampler's autoguidance weight (its guide prior's calls count in the energy)

    def __post_init__(self):
        self.num_images, self.num_frames = len(self.images), len(self.trace)
        self.key = uuid.uuid4().hex

    def label(self, image: int, sep: str = " · ", space: str = " ") -> str:
        """Which run and image: model, seed (when known), image, e.g. ``mnist · seed 0 · image 3``
        (an exported file's name: ``label(3, "-", "")`` -> ``mnist-seed0-image3``)."""
        seed = [] if self.seed is None else [f"seed{space}{self.seed}"]
        return sep.join([self.model, *seed, f"image{space}{image}"])

    @property
    def released(self) -> bool:
        """Whether the run store has dropped this run's arrays."""
        return self.trace is None

    def release(self):
        self.images = self.tokens = self.trace = self.whole = None
        self.frames, self.animations = OrderedDict(), {}


class RunStore:
    """At most ``max_runs`` generations over all sessions, each kept ``ttl`` seconds after its
    last use; older ones are released (their arrays dropped) so memory stays bounded whatever
    Gradio keeps in its session states."""

    def __init__(self, max_runs: int = MAX_RUNS, ttl: float = RUN_TTL_S):
        self.max_runs, self.ttl = max_runs, ttl
        self._runs: OrderedDict[str, tuple[Run, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._runs)

    def add(self, run: Run) -> Run:
        with self._lock:
            self._runs[run.key] = (run, time.monotonic())
            self._prune()
        trim_free_memory()   # what released runs and closed sessions freed goes back to the system
        return run

    def get(self, run) -> Run:
        """The live run behind a session's state, or InputError saying what to do."""
        if not isinstance(run, Run):
            raise InputError("Generate some images first (Generate tab)")
        with self._lock:
            self._prune()
            if run.released or run.key not in self._runs:
                raise InputError(f"this generation was cleared to free memory (the studio keeps the latest "
                                 f"{self.max_runs} generations, each {self.ttl / 60:.0f} minutes after its last use): "
                                 "generate again (Generate tab)")
            self._runs[run.key] = (run, time.monotonic())
            self._runs.move_to_end(run.key)
        return run

    def discard(self, run) -> None:
        """Release a run now (a session state's delete callback)."""
        if isinstance(run, Run):
            with self._lock:
                self._runs.pop(run.key, None)
            run.release()

    def _prune(self):
        now = time.monotonic()
        for key, (run, used) in list(self._runs.items()):
            if len(self._runs) > self.max_runs or now - used > self.ttl:
                del self._runs[key]
                run.release()
