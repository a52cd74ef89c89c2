"""Rendered pictures for the studio (numpy in, uint8 RGB out): the token grid as a clickable image,
a decoded image with one cell's patch outlined, the two phases of a run on a step axis, and the
pre-rendered frames of the unmasking animation (played by the browser as an animated GIF).

No UI and no model here, like :mod:`demo.plots`.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .media import tile, tile_index

CELL_PX = 32                       # one token cell of the grid image, in pixels (7 cells: 224 px)
MASKED = (217, 217, 217)           # still masked (grey, as in the plotly grid)
UNMASKED_NOW = (230, 30, 30)       # unmasked (or corrected) at this step
SELECTED = (31, 119, 255)          # the selected cell and its image patch
PHASE_COLORS = {"unmask": (76, 114, 176), "correct": (221, 132, 82)}   # the step axis's two phases
PHASE_NAMES = {"unmask": "unmasking", "correct": "corrector"}
NAMED_BAND_SHARE = 0.15  # a phase band narrower than this share of the axis is named in a legend under it
ANIMATION_FPS = 10                 # frames per second of the Play animation (GIF delays are in 1/100 s)
HOLD_S = 1.0                       # the last frame stays this long before the loop restarts


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=8)
def code_colors(num_codes: int) -> np.ndarray:
    """``[K, 3]`` uint8: code k's colour on plotly's Viridis scale (0 -> dark blue, K-1 -> yellow),
    the colours of the plotly token grid."""
    from plotly.colors import hex_to_rgb, sample_colorscale, unlabel_rgb

    pts = np.linspace(0, 1, num_codes) if num_codes > 1 else [0.0]
    cols = sample_colorscale("Viridis", list(pts))
    return np.array([unlabel_rgb(c) if c.startswith("rgb") else hex_to_rgb(c) for c in cols]).round().astype(np.uint8)


GRID_LEFT, GRID_TOP = 22, 40          # the cells' offset in a token grid image (row / column numbers, title)


def token_grid_image(tokens, mask_id: int, unmasked=None, selected: tuple[int, int] | None = None,
                     cell_px: int = CELL_PX, title: str = "") -> np.ndarray:
    """Token grid ``[h, w]`` -> RGB image: each code's colour and id (plotly's Viridis over the
    codebook, with a colour bar), masked cells grey with '?', cells ``unmasked [h, w]`` at this step
    outlined red, the ``selected`` (row, col) outlined blue; row and column numbers and ``title``
    around it. The cells start at pixel (GRID_LEFT, GRID_TOP): :func:`cell_at` maps a click back."""
    tok = np.asarray(tokens)
    h, w = tok.shape
    colors = code_colors(mask_id)                                          # [K, 3]
    bar_x = GRID_LEFT + w * cell_px + 10
    img = Image.new("RGB", (bar_x + 46, GRID_TOP + h * cell_px + 6), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font, small = _font(max(8, cell_px * 3 // 8)), _font(11)
    d.text((2, 2), title, fill=(40, 40, 40), font=_font(14))
    for r in range(h):
        d.text((GRID_LEFT - 6, GRID_TOP + (r + 0.5) * cell_px), str(r), fill=(90, 90, 90), font=small, anchor="rm")
    for c in range(w):
        d.text((GRID_LEFT + (c + 0.5) * cell_px, GRID_TOP - 4), str(c), fill=(90, 90, 90), font=small, anchor="mb")
    box_of = lambda r, c, inset=0: (GRID_LEFT + c * cell_px + inset, GRID_TOP + r * cell_px + inset,
                                    GRID_LEFT + (c + 1) * cell_px - 1 - inset, GRID_TOP + (r + 1) * cell_px - 1 - inset)
    for r in range(h):
        for c in range(w):
            k = int(tok[r, c])
            box = box_of(r, c)
            fill = MASKED if k == mask_id else tuple(int(v) for v in colors[k])
            d.rectangle(box, fill=fill, outline=(255, 255, 255))
            ink = (0, 0, 0) if k == mask_id or sum(fill) > 380 else (255, 255, 255)
            d.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), "?" if k == mask_id else str(k),
                   fill=ink, font=font, anchor="mm")
    if unmasked is not None:
        for r, c in zip(*np.nonzero(np.asarray(unmasked, bool))):
            d.rectangle(box_of(r, c), outline=UNMASKED_NOW, width=max(2, cell_px // 12))
    if selected is not None:
        d.rectangle(box_of(*selected, inset=max(3, cell_px // 8)), outline=SELECTED, width=max(2, cell_px // 12))
    bar_h = h * cell_px                                                    # colour bar: code 0 at the bottom
    ramp = colors[np.linspace(mask_id - 1, 0, bar_h).round().astype(int)]  # [bar_h, 3]
    img.paste(Image.fromarray(np.repeat(ramp[:, None], 10, 1)), (bar_x, GRID_TOP))
    d.text((bar_x + 13, GRID_TOP), str(mask_id - 1), fill=(90, 90, 90), font=small, anchor="lt")
    d.text((bar_x + 13, GRID_TOP + bar_h), "0", fill=(90, 90, 90), font=small, anchor="lb")
    d.text((bar_x + 13, GRID_TOP + bar_h / 2), "code", fill=(90, 90, 90), font=small, anchor="lm")
    return np.asarray(img)


def cell_at(x: float, y: float, latent: int, cell_px: int = CELL_PX) -> int | None:
    """The cell index ``row * latent + col`` under pixel (x, y) of a :func:`token_grid_image`
    (None outside the cells)."""
    c, r = (x - GRID_LEFT) // cell_px, (y - GRID_TOP) // cell_px
    return int(r * latent + c) if 0 <= r < latent and 0 <= c < latent else None


# a code atlas: each tile drawn at ATLAS_SCALE x; its margins: a blank strip on top (the studio draws the image's
# one-line label over the image's top), the column numbers' strip under it; a font (drawn with a 1-pixel
# stroke) still read when the page shows the atlas at about half size
ATLAS_SCALE, ATLAS_TOP, ATLAS_BOTTOM, ATLAS_FONT = 2, 64, 38, 28
ATLAS_INK = (60, 60, 60)
ATLAS_BOLD = dict(stroke_width=1, stroke_fill=ATLAS_INK)   # the numbers drawn thicker


def atlas_origin(num_codes: int, cols: int) -> tuple[int, int]:
    """(left, top): where the tile grid of a :func:`code_atlas_image` starts, right of the widest row
    number (the last row's first code), under a blank strip. The column numbers go under the grid:
    the studio draws the image's label over its top."""
    last_row = (num_codes - 1) // cols * cols
    return int(_font(ATLAS_FONT).getlength(str(last_row))) + 16, ATLAS_TOP


def code_atlas_image(tiles: np.ndarray, cols: int, scale: int = ATLAS_SCALE) -> np.ndarray:
    """Every code decoded, ``[K, H, W, C]`` uint8 -> the Codebook's atlas: :func:`demo.media.tile` of
    them, ``cols`` a row, with each row's first code at its left and the column's offset (0..cols-1)
    under it, so that code = row number + column number. The numbers are plain (no "+": shrunk by the
    page, a thin "+" read as "-"). The tile grid (2-pixel gaps around each tile) starts at
    :func:`atlas_origin`; :func:`code_at` maps a click back."""
    left, top = atlas_origin(len(tiles), cols)
    grid = tile(tiles, cols=cols, scale=scale)                               # [rows*(H*s+2)+2, cols*(W*s+2)+2, 3]
    img = Image.new("RGB", (grid.shape[1] + left, top + grid.shape[0] + ATLAS_BOTTOM), (255, 255, 255))
    img.paste(Image.fromarray(grid), (left, top))
    d, font = ImageDraw.Draw(img), _font(ATLAS_FONT)
    h, w = tiles.shape[1] * scale + 2, tiles.shape[2] * scale + 2            # one tile and its gap
    for r in range(-(-len(tiles) // cols)):
        d.text((left - 6, top + 2 + (r + 0.5) * h), str(r * cols), fill=ATLAS_INK, font=font, anchor="rm", **ATLAS_BOLD)
    for c in range(min(cols, len(tiles))):
        d.text((left + 2 + (c + 0.5) * w, top + grid.shape[0] + 4), str(c), fill=ATLAS_INK, font=font, anchor="mt", **ATLAS_BOLD)
    return np.asarray(img)


def code_at(x: float, y: float, num_codes: int, h: int, w: int, cols: int, scale: int = ATLAS_SCALE) -> int | None:
    """The code under pixel (x, y) of a :func:`code_atlas_image` of ``num_codes`` tiles of ``h x w``
    (None on a gap, a number or outside the tiles)."""
    left, top = atlas_origin(num_codes, cols)
    return tile_index(x - left, y - top, num_codes, h, w, cols=cols, scale=scale)


def outline_patch(img: np.ndarray, cell: tuple[int, int], latent: int) -> np.ndarray:
    """A decoded image ``[H, W]`` or ``[H, W, C]`` (uint8, any display scale) as RGB with the patch
    of token cell (row, col) outlined: the ``H/latent x W/latent`` block that cell's code decodes
    into (the decoder upsamples each cell 4x: 28x28 pixels from 7x7 tokens)."""
    a = np.asarray(img)
    a = np.repeat(a[..., None], 3, 2) if a.ndim == 2 else (np.repeat(a, 3, 2) if a.shape[2] == 1 else a[..., :3])
    out = Image.fromarray(np.ascontiguousarray(a))
    H, W = a.shape[:2]
    r, c = cell
    y0, y1 = round(r * H / latent), round((r + 1) * H / latent) - 1
    x0, x1 = round(c * W / latent), round((c + 1) * W / latent) - 1
    ImageDraw.Draw(out).rectangle((x0, y0, x1, y1), outline=SELECTED, width=max(1, H // 112))
    return np.asarray(out)


def phases(kinds: list[str]) -> tuple[int, int]:
    """(unmasking steps, corrector rounds) of a run whose steps have these kinds."""
    return sum(k == "unmask" for k in kinds), sum(k == "correct" for k in kinds)


def step_label(kinds: list[str], step: int) -> str:
    """'unmasking step 12/49' or 'corrector round 3/10' for ``step`` (1-based) of a run."""
    n_unmask, n_correct = phases(kinds)
    if kinds[step - 1] == "correct":
        return f"corrector round {step - n_unmask}/{n_correct}"
    return f"unmasking step {step}/{n_unmask}"


def step_axis_html(kinds: list[str], step: int, fps: int = ANIMATION_FPS) -> str:
    """The run's step axis as HTML: one coloured band per phase (width proportional to its steps,
    named with its step range, also as its hover title; a band under NAMED_BAND_SHARE of the axis stays
    blank and both phases are named in a legend under the axis) and a marker (class ``axis-marker``) at ``step`` (1-based). Data
    attributes carry the numbers and the Play animation's frame rate, read by the page's Play and Pause
    scripts (demo/ui.py's PLAY_JS moves the marker the same way while the animation plays)."""
    n_unmask, n_correct = phases(kinds)
    total = len(kinds)
    bands, names, narrow = [], [], False
    for kind, lo, n in (("unmask", 1, n_unmask), ("correct", n_unmask + 1, n_correct)):
        if n:
            col = "rgb({},{},{})".format(*PHASE_COLORS[kind])
            name = f"{PHASE_NAMES[kind]} {lo}-{lo + n - 1}" if n > 1 else f"{PHASE_NAMES[kind]} {lo}"
            names.append((col, name))
            too_narrow = n / total < NAMED_BAND_SHARE                 # its name then goes under the axis
            narrow |= too_narrow
            bands.append(f'<div class="phase phase-{kind}" title="{name}" style="flex:{n};background:{col};color:white;'
                         f'padding:1px 6px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;min-height:1.3em">'
                         f'{"" if too_narrow else name}</div>')
    left = 100 * (step - 0.5) / total
    legend = ""
    if narrow:
        legend = ('<div class="phase-legend" style="font-size:0.85em;margin:0 0 6px">' + " &nbsp; ".join(
            f'<span style="color:{col}">&#9632;</span> {name}' for col, name in names) + "</div>")
    return (f'<div id="phase-axis" data-unmask="{n_unmask}" data-correct="{n_correct}" data-step="{step}" '
            f'data-fps="{fps}" data-hold="{round(HOLD_S * fps)}" style="position:relative;font-size:0.85em;margin:2px 0 12px">'
            f'<div style="display:flex;gap:2px;border-radius:4px;overflow:hidden">{"".join(bands)}</div>'
            # a caret under the bands, pointing up at the step: a line across them hid a letter of a band's name
            f'<div class="axis-marker" title="step {step}" style="position:absolute;top:100%;left:{left:.2f}%;width:0;height:0;'
            f'margin-left:-6px;border-left:6px solid transparent;border-right:6px solid transparent;'
            f'border-bottom:9px solid black"></div></div>{legend}')


def axis_strip(kinds: list[str], step: int, width: int, height: int = 14) -> np.ndarray:
    """The step axis drawn into a frame: ``[height, width, 3]``, both phases coloured (the part
    before ``step`` bright, the rest pale) and a black marker at ``step``."""
    total = len(kinds)
    out = np.full((height, width, 3), 255, np.uint8)
    edges = np.linspace(0, width, total + 1).round().astype(int)
    for i, kind in enumerate(kinds):
        col = np.array(PHASE_COLORS[kind])
        out[2:-2, edges[i]:edges[i + 1]] = col if i < step else (255 - (255 - col) * 0.35).astype(np.uint8)
    x = min(width - 2, (edges[step - 1] + edges[step]) // 2)
    out[:, max(0, x - 1):x + 2] = 0
    return out


PANEL_LABELS = ("", "committed, decoded", "prediction, decoded")   # the token grid carries its own title
LABEL_H = 22                                                          # the labels' strip above the images


def animation_frame(grid: np.ndarray, committed: np.ndarray, predicted: np.ndarray, kinds: list[str],
                    step: int, caption: str, gap: int = 8, credit: str = "") -> np.ndarray:
    """One frame of the Play animation: [token grid | committed | predicted] (RGB; the two images
    labelled above them, as in the Unmasking view), the step axis under them, and a caption line
    naming the phase; ``credit`` (which run made it: model, seed, image), when given, on a grey line
    under it, so a shared GIF or video says where it came from."""
    parts = [np.asarray(p) for p in (grid, committed, predicted)]
    parts = [np.repeat(p[..., None], 3, 2) if p.ndim == 2 else p[..., :3] for p in parts]
    tops = [LABEL_H if label else 0 for label in PANEL_LABELS]
    H = max(top + p.shape[0] for top, p in zip(tops, parts))
    W = sum(p.shape[1] for p in parts) + gap * (len(parts) + 1)
    text_h = 22 + (18 if credit else 0)
    frame = np.full((H + 2 * gap + 14 + text_h, W, 3), 255, np.uint8)
    x, xs = gap, []
    for top, p in zip(tops, parts):
        frame[gap + top:gap + top + p.shape[0], x:x + p.shape[1]] = p
        xs.append(x)
        x += p.shape[1] + gap
    frame[H + gap + 4:H + gap + 18, gap:W - gap] = axis_strip(kinds, step, W - 2 * gap)
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    for x, label in zip(xs, PANEL_LABELS):
        draw.text((x, gap + LABEL_H // 2), label, fill=(60, 60, 60), font=_font(14), anchor="lm")
    kind = kinds[step - 1]
    draw.text((gap, H + gap + 22), caption, fill=tuple(int(v * 0.8) for v in PHASE_COLORS[kind]), font=_font(15))
    draw.text((gap, H + gap + 42), credit, fill=(110, 110, 110), font=_font(13))
    return np.asarray(img)


def write_gif(frames: list[np.ndarray], path: str | Path, fps: int = ANIMATION_FPS, hold_s: float = HOLD_S) -> Path:
    """Write ``frames`` as a looping GIF at ``fps`` (the last frame held ``hold_s`` seconds longer)."""
    path = Path(path)
    pics = [Image.fromarray(f).quantize(colors=255, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
            for f in frames]
    ms = round(1000 / fps)
    durations = [ms] * (len(pics) - 1) + [ms + round(1000 * hold_s)]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=durations, loop=0, disposal=1, optimize=False)
    return path
