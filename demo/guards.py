"""Clear messages for any value sent to the studio's API, checked before a component's own code.

A slider given a string fails inside Gradio's preprocessing (``'<' not supported between 'str' and
'int'``) and the caller sees only Gradio's generic "the upstream app has raised an exception".
:func:`guard_inputs` checks every input value of every event against the component as the
caller's session sees it (a maximum changed by ``gr.update`` included) before Gradio touches it,
so a bad value gets a message naming the control and what it accepts; the bounds are the
components' own. One refused value is said once: a control that feeds several events (a slider's
check and a follower that mirrors it elsewhere) would otherwise raise the same toast for each.
"""
from __future__ import annotations

import contextvars
import inspect
import math
import numbers
import threading
import time

import gradio as gr

from spiking_diffusion.image_input import unreadable_reason


def user_error(message: str) -> gr.Error:
    """A message for the caller (a user mistake: no traceback in the server's log); the studio's
    handlers raise the same (``checks.friendly``)."""
    return gr.Error(message, duration=8, print_exception=False)


def name_of(block) -> str:
    return getattr(block, "label", None) or getattr(block, "elem_id", None) or type(block).__name__


def echo(value) -> str:
    """``value`` as a refusal message shows it: its repr, cut at 80 characters. A whole number from
    2**53 on is shown rounded ("about 1e+20", "a 400-digit number"): the browser keeps numbers as
    doubles, so the last digits of a typed one are not the ones typed."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(value) >= 2 ** 53:
        digits = len(str(abs(int(value))))
        return f"about {float(value):.3g}" if digits < 300 else f"a {digits}-digit number"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fmt(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


class _SaidOnce:
    """The messages each session was shown in the last :attr:`window` seconds: the same message again
    within it (another event of the same user action) is raised invisibly, so it still stops its
    event (an API caller still gets the message) but shows no second toast. The window counts from
    the toast shown, so a value refused again later is said again. Sessions are told apart by their
    state object (one per browser session); without one nothing is held back. The last message of
    each session is kept a while longer, for a note that says it after its toast has gone
    (:func:`last_message`)."""

    def __init__(self, window: float = 2.0, kept: float = 60.0):
        self.window, self.kept, self.shown, self.last, self.lock = window, kept, {}, {}, threading.Lock()

    def __call__(self, state, error: gr.Error) -> gr.Error:
        if state is None:
            return error
        key, now = (id(state), error.message), time.monotonic()
        with self.lock:
            for k in [k for k, t in self.shown.items() if now - t > self.window]:   # forget the old ones
                del self.shown[k]
            for k in [k for k, (_, t) in self.last.items() if now - t > self.kept]:
                del self.last[k]
            self.last[id(state)] = (error.message, now)
            if key in self.shown:
                return gr.Error(error.message, visible=False, print_exception=False)
            self.shown[key] = now
        return error

    def last_of(self, state, within: float) -> str | None:
        """The message last raised for ``state``'s session, if within the last ``within`` seconds."""
        with self.lock:
            message, at = self.last.get(id(state), (None, -math.inf))
        return message if state is not None and time.monotonic() - at <= within else None


_SAID = _SaidOnce()
_SESSION: contextvars.ContextVar = contextvars.ContextVar("sd_session_state", default=None)   # the event's session


def last_message(within: float = 10.0) -> str | None:
    """For an event handler: the message last raised for its session (by a check, a component's
    reading or an event) in the last ``within`` seconds, else None. A ``.failure`` handler reads its
    failed event's message here (Gradio passes it none) to say why in a note that stays."""
    return _SAID.last_of(_SESSION.get(), within)


def is_empty(value) -> bool:
    """A cleared box: Gradio sends None (or an empty string) for it."""
    return value is None or (isinstance(value, str) and not value.strip())


def check_number(block, payload):
    """Sliders and numbers: a finite int/float (not a bool or a string) within the component's bounds."""
    lo, hi = block.minimum, block.maximum
    step = getattr(block, "step", None)
    whole = getattr(block, "precision", None) == 0 or (step is not None and float(step).is_integer()
                                                      and (lo is None or float(lo).is_integer()))
    kind = "a whole number" if whole else "a number"
    span = (f" in {_fmt(lo)}..{_fmt(hi)}" if lo is not None and hi is not None else
            f" >= {_fmt(lo)}" if lo is not None else f" <= {_fmt(hi)}" if hi is not None else "")
    if is_empty(payload):
        raise user_error(f"{name_of(block)} is empty: enter {kind}{span}")
    ok = (isinstance(payload, (int, float)) and not isinstance(payload, bool)
          and (isinstance(payload, int) or math.isfinite(payload))   # a huge int is no float: compared as it is
          and (lo is None or payload >= lo) and (hi is None or payload <= hi)
          and (not whole or isinstance(payload, int) or payload.is_integer()))
    if not ok:
        raise user_error(f"{name_of(block)} must be {kind}{span}; got {echo(payload)}")


def check_choice(block, payload):
    """Dropdowns and radios: one of the choices' values."""
    values = [c[1] if isinstance(c, (tuple, list)) else c for c in block.choices]
    if any(type(payload) is type(v) and payload == v for v in values) or (
            isinstance(payload, int) and not isinstance(payload, bool) and payload in values):
        return
    if values and all(isinstance(v, int) for v in values) and values == list(range(values[0], values[-1] + 1)):
        accepted = f"a whole number in {values[0]}..{values[-1]}"
    else:
        accepted = "one of " + ", ".join(map(repr, values[:12])) + (", ..." if len(values) > 12 else "")
    raise user_error(f"{name_of(block)} must be {accepted}; got {echo(payload)}")


def check_file(block, payload):
    """Images and drawings: None or the dict Gradio's client sends for a file (or a drawing)."""
    if payload is None:
        return
    if isinstance(block, gr.ImageEditor):
        ok = isinstance(payload, dict) and set(payload) <= {"background", "layers", "composite", "id"} and all(
            v is None or isinstance(v, dict) for k, v in payload.items() if k in ("background", "composite")) \
            and isinstance(payload.get("layers", []), list)
        hint = "a drawing: {'background': ..., 'layers': [...], 'composite': handle_file(path)}"
    else:
        ok = isinstance(payload, dict) and isinstance(payload.get("path") or payload.get("url"), str)
        hint = "an image file (gradio_client: handle_file(path))"
    if not ok:
        raise user_error(f"{name_of(block)} must be {hint}; got {echo(payload)}")


def check_payload(block, payload):
    """The check that fits ``block`` (numbers, choices, files); other components pass."""
    if isinstance(block, (gr.Slider, gr.Number)):
        check_number(block, payload)
    elif isinstance(block, (gr.Dropdown, gr.Radio)) and not getattr(block, "multiselect", False) \
            and not getattr(block, "allow_custom_value", False):
        check_choice(block, payload)
    elif isinstance(block, (gr.Image, gr.ImageEditor)):
        check_file(block, payload)


def guard(block) -> None:
    """Turn any error in ``block``'s own preprocessing (a corrupt file, ...) into a message naming it."""
    if getattr(block, "_sd_guarded", False):
        return
    inner = block.preprocess
    label = name_of(block)
    is_file = isinstance(block, (gr.Image, gr.ImageEditor))

    def preprocess(payload):
        try:
            return inner(payload)
        except gr.Error:
            raise
        except Exception as e:  # corrupt file, decompression bomb, unsupported format, ...
            if is_file:  # named by its file name: the server's temporary folder means nothing to the sender
                sent = payload.get("orig_name") if isinstance(payload, dict) else getattr(payload, "orig_name", None)
                name = sent or ("drawing" if isinstance(block, gr.ImageEditor) else "file")  # (FileData or dict)
                path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
                raise user_error(f"{label}: could not read the uploaded image {name}: {unreadable_reason(e, path)}") from None
            raise user_error(f"{label}: could not use {echo(payload)} ({type(e).__name__}: {e})") from None

    block.preprocess = preprocess
    block._sd_guarded = True


def guard_inputs(demo: gr.Blocks) -> gr.Blocks:
    """Check every input value of every event of ``demo`` before Gradio preprocesses it (against
    the session's own copy of the component), and guard each component's preprocessing; every
    message raised (by the checks, the preprocessing or an event itself) is said once per session
    (:class:`_SaidOnce`). Returns ``demo``."""
    for fn in demo.fns.values():
        for block in fn.inputs:
            if isinstance(block, gr.components.Component) and not block.stateful:
                guard(block)
    inner, once = demo.preprocess_data, _SAID

    async def preprocess_data(block_fn, inputs, state=None, *args, **kwargs):
        _SESSION.set(state)
        props = getattr(block_fn, "component_prop_inputs", ())
        for i, block in enumerate(block_fn.inputs[: len(inputs)]):
            if block.stateful or i in props:
                continue
            current = state[block._id] if state is not None and block._id in state else block
            try:
                check_payload(current, inputs[i])
            except gr.Error as e:
                raise once(state, e) from None
        try:
            return await inner(block_fn, inputs, state, *args, **kwargs)
        except gr.Error as e:   # a component's own reading (a file that is no picture): also said once
            raise once(state, e) from None
        except Exception as e:  # anything the checks above did not foresee: still say what failed
            raise user_error(f"could not use the values sent to {block_fn.name or 'this event'} "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None

    demo.preprocess_data = preprocess_data
    call = demo.call_function
    signature = inspect.signature(call)

    async def call_function(*args, **kwargs):
        state = signature.bind(*args, **kwargs).arguments.get("state")
        _SESSION.set(state)                          # (the event's own task: last_message reads it)
        try:   # an event's own refusal, said once too (one upload read by two change events)
            return await call(*args, **kwargs)
        except gr.Error as e:
            raise once(state, e) from None

    demo.call_function = call_function
    return demo
