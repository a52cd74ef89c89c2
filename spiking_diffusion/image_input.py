"""Any picture -> the model's input, made the way the model's data set was made.

:func:`prepare_image` reads a file, bytes, a PIL image or an array the way a person sees it
(palette, CMYK, 16/32-bit, grey+alpha, RGBA, 1-bit, animated: first frame, EXIF rotation) and
turns it into floats ``[1, C, 28, 28]`` in [0, 1]:

- MNIST-family data sets (light strokes on black): the background is found on the picture's
  border (light border: the picture is inverted), stretched to 0, and the ink framed as the data
  set framed it. MNIST (LeCun et al. 1998, and KMNIST / EMNIST in its layout): the ink's bounding
  box scaled to fit 20x20 keeping its aspect ratio, then placed in 28x28 with its centre of mass
  at the centre. Fashion-MNIST (Xiao et al. 2017): the longest side scaled to 28 and the box
  centred.
- colour data sets (CIFAR-10): the centre square resized to 28x28; never inverted by 'auto'.

The pixel count is checked from the file header before anything is decoded (:data:`MAX_PIXELS`).
Errors are :class:`~spiking_diffusion.errors.SpikingDiffusionError` with a message for the user.
"""
from __future__ import annotations

import io
import math
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import SpikingDiffusionError

MAX_PIXELS = 4096 * 4096      # the largest picture decoded (width x height, read from the header)
WORK_SIDE = 1024              # pictures are box-reduced to at most about this before float work
INK_THRESHOLD = 0.25          # stretched ink level that counts for the bounding box
MIN_CONTRAST = 0.05           # less ink-to-background difference than this: no ink found
BLOCKY_SCALE = 2.0            # enlarged more than this (from its original pixels): the note says it looks blocky or blurred
INVERT_CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class Framing:
    """How a data set placed its pictures in the frame.

    box: longest ink side after scaling (None: the whole picture, centre square, resized);
    centre: 'mass' (centre of mass at the frame's centre) or 'box' (bounding box centred);
    auto_invert: whether 'auto' inverts a picture whose border is light.
    """

    box: int | None
    centre: str = "box"
    auto_invert: bool = True


MNIST_FRAMING = Framing(20, "mass")
PHOTO_FRAMING = Framing(None, "box", auto_invert=False)
FRAMINGS = {"mnist": MNIST_FRAMING, "kmnist": MNIST_FRAMING, "emnist-letters": MNIST_FRAMING,
            "synthetic": MNIST_FRAMING, "fashion-mnist": Framing(28, "box"),
            "cifar10": PHOTO_FRAMING, "cifar10-folder": PHOTO_FRAMING}


def framing_for(dataset: str | None, channels: int) -> Framing:
    """The framing of a known data set; otherwise MNIST's for grey models, a photo's for colour."""
    if dataset in FRAMINGS:
        return FRAMINGS[dataset]
    return MNIST_FRAMING if channels == 1 else PHOTO_FRAMING


# --- reading ----------------------------------------------------------------------------------
READABLE = "PNG, JPEG, GIF, BMP, TIFF, WebP and the other formats the Pillow library opens"


def _without_path(text: str) -> str:
    """``text`` with the folders of any absolute path left out (the file's name stays): an upload's
    temporary path means nothing to its sender."""
    return re.sub(r"(?<![\w.])/(?:[^/\s'\"]+/)+([^/\s'\"]*)", r"\1", text)


EMPTY_FILE = "the file is empty (0 bytes)"


def unreadable_reason(error: Exception, path=None) -> str:
    """Why a file is not a picture, in words (no folder paths): an empty file says so (``path``: the
    file that failed, when known); an unknown format names what is accepted."""
    if path is not None and _is_empty(path):
        return EMPTY_FILE
    if isinstance(error, UnidentifiedImageError):
        return f"this file is not a picture in a format we can read (accepted: {READABLE})"
    if isinstance(error, (SyntaxError, EOFError)) or (isinstance(error, OSError) and error.errno is None):
        # Pillow's own complaint about a known format whose bytes break off or make no sense (a system
        # error, "Is a directory" or "Permission denied", carries an errno and is said as it is)
        return f"the file is damaged or truncated ({_without_path(str(error))})"
    return _without_path(str(error))


def _is_empty(data) -> bool:
    """Whether a path or file object holds no bytes at all (its position is left as it was)."""
    if isinstance(data, (str, os.PathLike)):
        return os.path.isfile(data) and os.path.getsize(data) == 0
    try:
        at = data.tell()
        empty = not data.read(1)
        data.seek(at)
        return empty
    except (AttributeError, OSError, ValueError):   # a stream that cannot seek: Pillow says what is wrong
        return False


# Pillow's image modes in words, for the notes a person reads ("read 300x300 greyscale")
MODE_WORDS = {"1": "black and white", "L": "greyscale", "LA": "greyscale with transparency",
              "La": "greyscale with transparency", "P": "palette colour", "PA": "palette colour with transparency",
              "RGB": "colour", "RGBA": "colour with transparency", "RGBa": "colour with transparency",
              "CMYK": "CMYK colour", "YCbCr": "YCbCr colour", "LAB": "Lab colour", "HSV": "HSV colour",
              "I": "32-bit greyscale", "F": "floating-point greyscale"}


def mode_words(mode: str) -> str:
    """Pillow's image ``mode`` in words: 'L' -> 'greyscale', 'I;16' -> '16-bit greyscale', 'RGBA' ->
    'colour with transparency'; a mode not listed as it is."""
    if mode.startswith("I;16"):
        return "16-bit greyscale"
    return MODE_WORDS.get(mode, mode)


def open_image(source, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, list[str]]:
    """A path, bytes, file object, PIL image or array ``[H, W(, 1|2|3|4)]`` -> (PIL image, notes).
    Only the header is read before the size check; the first frame of an animation is taken and
    EXIF rotation applied. Raises SpikingDiffusionError for unreadable or too large pictures."""
    notes = []
    if source is None:
        raise SpikingDiffusionError("no image given: upload or draw one first")
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, (str, os.PathLike, bytes, bytearray)) or hasattr(source, "read"):
        data = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        if _is_empty(data):
            raise SpikingDiffusionError(f"could not read the image: {EMPTY_FILE}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(data)            # lazy: reads the header only
        except FileNotFoundError:
            raise SpikingDiffusionError(f"image file not found: {source}") from None
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
            raise SpikingDiffusionError(f"could not read the image: {unreadable_reason(e)}") from None
    else:
        img = _from_array(source)
    w, h = img.size
    if w * h > max_pixels or w < 1 or h < 1:
        raise SpikingDiffusionError(f"image is {w}x{h} pixels; at most {max_pixels:,} pixels "
                                    f"(e.g. {math.isqrt(max_pixels)}x{math.isqrt(max_pixels)}) are accepted")
    frames = getattr(img, "n_frames", 1)
    try:
        if frames > 1:
            img.seek(0)
            notes.append(f"first of {frames} frames")
        orientation = img.getexif().get(0x0112, 1)
        img = ImageOps.exif_transpose(img)       # decodes the (first) frame
        img.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise SpikingDiffusionError(f"could not read the image: the file is damaged or truncated "
                                    f"({_without_path(str(e))})") from None
    if orientation != 1:
        notes.append("turned upright (EXIF orientation)")
    return img, notes


def _from_array(a) -> Image.Image:
    a = np.asarray(a)
    if a.dtype == object or a.ndim not in (2, 3) or a.size == 0 or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)) \
            or a.dtype.kind not in "biuf":
        raise SpikingDiffusionError(f"expected an image array shaped [H, W] or [H, W, 1|2|3|4] of numbers; "
                                    f"got shape {list(a.shape)}, dtype {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.dtype.kind == "f" or a.dtype == bool:
        a = np.nan_to_num(a.astype(np.float64))
        a = a / 255 if a.max() > 1 else a            # floats in [0, 1] or [0, 255]
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        a = (np.clip(a, 0, 65535).astype(np.float64) / (65535 if a.max() > 255 else 255) * 255).round().astype(np.uint8)
    return Image.fromarray(a, {2: "L", 3: {2: "LA", 3: "RGB", 4: "RGBA"}.get(a.shape[-1])}[a.ndim])


def to_float(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """PIL image of any mode -> (colour ``[H, W, 1|3]`` float in [0, 1], premultiplied by alpha when
    there is one, alpha ``[H, W]`` or None). Pictures larger than :data:`WORK_SIDE` are box-reduced."""
    mode = img.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
    elif mode == "PA":
        mode = "RGBA"
    elif mode == "1":
        mode = "L"
    elif mode.startswith("I;16") or mode == "I":
        mode = "I"
    elif mode not in ("L", "LA", "La", "RGB", "RGBA", "RGBa", "F"):
        mode = "RGB"                                   # CMYK, YCbCr, LAB, HSV, ...
    img = img.convert(mode) if img.mode != mode else img
    if mode in ("RGBA", "LA"):
        img = img.convert("RGBa" if mode == "RGBA" else "La")   # premultiplied: reduce and composite cleanly
    factor = math.ceil(max(img.size) / WORK_SIDE)
    if factor > 1:
        img = img.reduce(factor)
    a = np.asarray(img).astype(np.float32)
    if mode == "I":        # 16- or 32-bit integers: scale by the range the values use
        top = a.max()
        a = a / (255.0 if top <= 255 else 65535.0 if top <= 65535 else float(top))
    elif mode == "F":
        lo, top = float(a.min()), float(a.max())
        a = a if lo >= 0 and top <= 1 else a / 255.0 if lo >= 0 and top <= 255 else (a - lo) / max(top - lo, 1e-12)
    else:
        a = a / 255.0
    a = np.clip(np.nan_to_num(a), 0, 1)
    a = a[..., None] if a.ndim == 2 else a
    if mode in ("RGBA", "LA", "La", "RGBa"):
        return a[..., :-1], a[..., -1]
    return a, None


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 1|3]`` -> ``[H, W]`` (ITU-R 601-2, as Pillow's 'L')."""
    return rgb[..., 0] if rgb.shape[-1] == 1 else rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _border(g: np.ndarray) -> np.ndarray:
    """The outer ring of ``[H, W]`` (about 3% of the shorter side, at least one pixel)."""
    k = max(1, round(0.03 * min(g.shape)))
    return np.concatenate([g[:k].ravel(), g[-k:].ravel(), g[:, :k].ravel(), g[:, -k:].ravel()])


def _resize(g: np.ndarray, w: int, h: int) -> np.ndarray:
    """Float ``[H, W]`` -> ``[h, w]``, antialiased, kept in [0, 1]."""
    return np.clip(np.asarray(Image.fromarray(g.astype(np.float32), "F").resize((w, h), Image.Resampling.LANCZOS)), 0, 1)


# --- the model's input ------------------------------------------------------------------------
def prepare_image(source, channels: int = 1, dataset: str | None = None, invert: str = "auto",
                  size: int = 28, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Any picture -> (float32 ``[1, channels, size, size]`` in [0, 1], a note of what was done).

    ``dataset`` (the model's, e.g. ``pipe.info['dataset']``) picks the framing (:func:`framing_for`).
    ``invert``: 'auto' (MNIST family: invert when the border is light; colour: never), 'yes', 'no'.
    Transparent areas become the background: black under light ink, white under dark ink.
    Raises SpikingDiffusionError (no image, unreadable file, more than ``max_pixels`` pixels,
    bad ``invert`` or ``channels``).
    """
    if invert not in INVERT_CHOICES:
        raise SpikingDiffusionError(f"invert must be one of {', '.join(INVERT_CHOICES)}; got {invert!r}")
    if channels not in (1, 3):
        raise SpikingDiffusionError(f"channels must be 1 or 3; got {channels!r}")
    img, notes = open_image(source, max_pixels)
    orig = f"{img.width}x{img.height} {mode_words(img.mode)}"
    rgb, alpha = to_float(img)
    if rgb.shape[:2] != (img.height, img.width):   # box-reduced: the sizes in the notes below are of this
        notes.append(f"reduced to {rgb.shape[1]}x{rgb.shape[0]}")
    if alpha is not None and alpha.min() < 1:
        covered = float(alpha.sum())
        ink = float(_luminance(rgb).sum() / covered) if covered > 0 else 0.0   # mean colour under the alpha
        bg = 0.0 if ink > 0.5 else 1.0
        rgb = rgb + (1 - alpha[..., None]) * bg                                   # premultiplied over bg
        notes.append(f"transparent areas made {'black' if bg == 0 else 'white'} (the ink is {'light' if bg == 0 else 'dark'})")
    framing = framing_for(dataset, channels)
    reduced = img.width / rgb.shape[1]                # original pixels per pixel worked on (1: not reduced)
    if framing.box is None:
        x, more = _photo(rgb, channels, invert, size, reduced)
    else:
        x, more = _mnist_like(_luminance(rgb), framing, invert, size, reduced)
    notes = [f"read {orig}"] + notes + more
    return x[None].astype(np.float32), "; ".join(notes)


def _enlarged(side: int, w: int, h: int, reduced: float, ink: bool) -> list[str]:
    """The note for a picture (or, ``ink``, its ink) of ``w x h`` pixels whose longer side was scaled to
    ``side``, if that enlarged its original pixels (``reduced`` of them per pixel worked on) more than
    :data:`BLOCKY_SCALE` times: so few pixels give a blocky or blurred input (a surprise for a tiny upload)."""
    w, h = round(w * reduced), round(h * reduced)                              # the original pixels
    scale = side / max(w, h)
    if scale <= BLOCKY_SCALE:
        return []
    what, advice = ("pixels of ink", "bigger strokes, or a closer crop, keep it sharp") if ink else \
        ("pixels", "a larger picture keeps it sharp")
    return [f"enlarged {scale:.1f}x from only {w}x{h} {what}, so it looks blocky or blurred ({advice})"]


def _photo(rgb: np.ndarray, channels: int, invert: str, size: int, reduced: float = 1.0):
    """``reduced``: how many original pixels one of ``rgb``'s spans (a box-reduced picture's)."""
    h, w, _ = rgb.shape
    s = min(h, w)
    notes = [] if h == w else [f"centre {s}x{s} square taken"]
    rgb = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if channels == 1:
        rgb = _luminance(rgb)[..., None]
    elif rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, -1)
    x = np.stack([_resize(rgb[..., c], size, size) for c in range(rgb.shape[-1])])   # [C, size, size]
    notes.append(f"resized to {size}x{size}")
    notes += _enlarged(size, s, s, reduced, ink=False)
    if invert == "yes":
        x = 1 - x
        notes.append("inverted")
    return x, notes


def _mnist_like(g: np.ndarray, framing: Framing, invert: str, size: int, reduced: float = 1.0):
    """Grey ``[H, W]`` -> ``[1, size, size]`` light ink on 0, framed as ``framing`` says. ``reduced``:
    how many original pixels one of ``g``'s spans (a box-reduced picture's)."""
    notes = []
    inverted = invert == "yes" or (invert == "auto" and framing.auto_invert and np.median(_border(g)) > 0.5)
    if inverted:
        g = 1 - g
        notes.append("inverted: its border is light, so it was read as dark ink on light paper (this data set's "
                     "images are light ink on dark)" if invert == "auto" else "inverted")
    bg, top = float(np.median(_border(g))), float(g.max())
    if top - bg < MIN_CONTRAST:
        if bg - float(g.min()) >= MIN_CONTRAST:   # there is ink, darker than the background
            notes.append("blank input: the ink is darker than the background, and this data set's images are light ink "
                         "on dark; " + ("it was inverted to get here: choose Invert colours 'no'" if inverted else
                                        "choose Invert colours 'yes' to invert it"))
        else:
            notes.append("no ink found against the background: blank input")
        return np.zeros((1, size, size), np.float32), notes
    g = np.clip((g - bg) / (top - bg), 0, 1)                                   # background -> 0, ink -> 1
    rows, cols = np.nonzero(g > INK_THRESHOLD)
    g = g[rows.min():rows.max() + 1, cols.min():cols.max() + 1]               # the ink's bounding box
    h, w = g.shape
    scale = min(framing.box / h, framing.box / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    patch = _resize(g, nw, nh)                                                 # [nh, nw]
    if framing.centre == "mass" and patch.sum() > 0:
        from scipy import ndimage

        cy, cx = ndimage.center_of_mass(patch)
        top_left = (round((size - 1) / 2 - cy), round((size - 1) / 2 - cx))
    else:
        top_left = ((size - nh) // 2, (size - nw) // 2)
    out = np.zeros((size, size), np.float32)
    y0, x0 = top_left
    ys, xs = slice(max(0, y0), min(size, y0 + nh)), slice(max(0, x0), min(size, x0 + nw))
    out[ys, xs] = patch[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    notes.append(f"ink {w}x{h} scaled into {framing.box}x{framing.box}, "
                 f"{'centre of mass' if framing.centre == 'mass' else 'box'} centred in {size}x{size}")
    notes += _enlarged(framing.box, w, h, reduced, ink=True)
    return out[None], notes
