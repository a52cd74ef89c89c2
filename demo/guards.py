"""Clear messages for any value sent to the studio's API, checked before a component's own code.

A slider given a string fails inside Gradio's preprocessing (``'<' not supported between 'str' and
'int'``) and the caller sees only Gradio's generic "the upstream app has raised an exception".
:func:`guard_inputs` wraps every input component of every event so that a bad value gets a
message naming the control and what it accepts; the bounds are the components' own.
"""
from __future__ import annotations

import math

import gradio as gr


def _error(message: str) -> gr.Error:
    """A message for the caller (a user mistake: no traceback in the server's log)."""
    return gr.Error(message, duration=8, print_exception=False)


def name_of(block) -> str:
    return getattr(block, "label", None) or getattr(block, "elem_id", None) or type(block).__name__


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fmt(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def check_number(block, payload):
    """Sliders and numbers: a finite int/float (not a bool or a string) within the component's bounds."""
    lo, hi = block.minimum, block.maximum
    step = getattr(block, "step", None)
    whole = getattr(block, "precision", None) == 0 or (step is not None and float(step).is_integer()
                                                      and (lo is None or float(lo).is_integer()))
    kind = "a whole number" if whole else "a number"
    span = (f" in {_fmt(lo)}..{_fmt(hi)}" if lo is not None and hi is not None else
            f" >= {_fmt(lo)}" if lo is not None else f" <= {_fmt(hi)}" if hi is not None else "")
    ok = (isinstance(payload, (int, float)) and not isinstance(payload, bool) and math.isfinite(payload)
          and (lo is None or payload >= lo) and (hi is None or payload <= hi)
          and (not whole or float(payload).is_integer()))
    if not ok:
        raise _error(f"{name_of(block)} must be {kind}{span}; got {_short(payload)}")


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
    raise _error(f"{name_of(block)} must be {accepted}; got {_short(payload)}")


def _guard_data_model(block):
    """Wrap the pydantic model Gradio validates a file payload with (before preprocessing)."""
    model = block.data_model
    label = name_of(block)
    hint = ("an image file (gradio_client: handle_file(path))" if not isinstance(block, gr.ImageEditor) else
            "a drawing: {'background': ..., 'layers': [...], 'composite': handle_file(path)}")

    @classmethod
    def model_validate(cls, obj, *args, **kwargs):
        try:
            return model.model_validate.__func__(cls, obj, *args, **kwargs)
        except gr.Error:
            raise
        except Exception:
            raise _error(f"{label} must be {hint}; got {_short(obj)}") from None

    block.data_model = type(model.__name__, (model,), {"model_validate": model_validate, "__module__": model.__module__})


def guard(block) -> None:
    """Check ``block``'s payload before its own preprocessing; turn any error there into a message."""
    if getattr(block, "_sd_guarded", False):
        return
    inner = block.preprocess
    label = name_of(block)
    if isinstance(block, (gr.Slider, gr.Number)):
        check = check_number
    elif isinstance(block, (gr.Dropdown, gr.Radio)) and not getattr(block, "multiselect", False) \
            and not getattr(block, "allow_custom_value", False):
        check = check_choice
    else:
        check = None
    is_file = isinstance(block, (gr.Image, gr.ImageEditor))
    if is_file and getattr(block, "data_model", None) is not None:
        _guard_data_model(block)

    def preprocess(payload):
        if check is not None:
            check(block, payload)
        try:
            return inner(payload)
        except gr.Error:
            raise
        except Exception as e:  # corrupt file, decompression bomb, unsupported format, ...
            what = "could not read the uploaded image" if is_file else f"could not use {_short(payload)}"
            raise _error(f"{label}: {what} ({type(e).__name__}: {e})") from None

    block.preprocess = preprocess
    block._sd_guarded = True


def guard_inputs(demo: gr.Blocks) -> gr.Blocks:
    """Guard every input component of every event of ``demo`` (states excepted). Returns ``demo``."""
    for fn in demo.fns.values():
        for block in fn.inputs:
            if isinstance(block, gr.components.Component) and not block.stateful:
                guard(block)
    return demo
