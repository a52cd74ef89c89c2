"""Pure plotting functions for the studio: numpy arrays in, plotly figures out. No UI, no model."""
from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

_LAYOUT = dict(margin=dict(l=50, r=20, t=40, b=40), template="plotly_white")
# a figure title above subplot titles: a taller top margin, the title at its top (they overlapped)
_PANELS_LAYOUT = _LAYOUT | dict(margin=dict(l=50, r=20, t=80, b=40))


def count(n: int, noun: str) -> str:
    """'1 spike', '3 spikes'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def layer_label(name: str) -> str:
    """A recorded layer's name as a reader says it: 'encoder.lif1', 'encoder.block2.2' -> 'encoder
    layer 1', 'encoder layer 2'; 'asg.lif' -> 'spike generator (ASG)'; the denoiser's 'lif1',
    'conv3.2' -> 'denoiser layer 1', 'denoiser layer 3'; any other name as it is."""
    if m := re.fullmatch(r"(encoder|decoder)\.(?:block(\d+)\.\d+|lif(\d+))", name):
        return f"{m[1]} layer {m[2] or m[3]}"
    if name.startswith("asg."):
        return "spike generator (ASG)"
    if m := re.fullmatch(r"conv(\d+)\.\d+|lif(\d+)", name):
        return f"denoiser layer {m[1] or m[2]}"
    return name


def _panels_layout(fig: go.Figure, title: str, height: int, **kw) -> None:
    """A figure of subplots with a title: the title at the top of a taller margin, above the panels' own."""
    fig.update_layout(title=dict(text=title, y=1, yref="container", yanchor="top", pad=dict(t=12)), height=height,
                      **_PANELS_LAYOUT, **kw)


def _fig(title: str, height: int = 320, **kw) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=height, **_LAYOUT, **kw)
    return fig


def token_grid(tokens, mask_id: int, unmasked=None, selected: tuple[int, int] | None = None,
               title: str = "Tokens") -> go.Figure:
    """7x7 token grid: code ids as colour and text (hover too), masked cells grey with '?',
    cells unmasked at this step outlined in red, the selected cell outlined in blue."""
    tok = np.asarray(tokens)
    h, w = tok.shape
    masked = tok == mask_id
    z = np.where(masked, np.nan, tok.astype(float))
    text = np.where(masked, "?", tok.astype(str))
    state = np.where(masked, "masked", "committed")
    if unmasked is not None:
        state = np.where(np.asarray(unmasked, bool), "unmasked now", state)
    fig = _fig(title, height=360, width=380)
    fig.add_trace(go.Heatmap(z=np.where(masked, 0, np.nan), colorscale=[[0, "#d9d9d9"], [1, "#d9d9d9"]],
                             showscale=False, hoverinfo="skip", name="masked"))
    fig.add_trace(go.Heatmap(
        z=z, text=text, texttemplate="%{text}", colorscale="Viridis", zmin=0, zmax=mask_id - 1,
        customdata=np.dstack([text, state]), name="tokens",
        colorbar=dict(title=dict(text="code id", side="right"), thickness=14, len=0.85),   # beside it: not clipped
        hovertemplate="row %{y}, col %{x}<br>code %{customdata[0]}<br>%{customdata[1]}<extra></extra>"))
    if unmasked is not None:
        for r, c in zip(*np.nonzero(np.asarray(unmasked, bool))):
            fig.add_shape(type="rect", x0=c - .5, x1=c + .5, y0=r - .5, y1=r + .5, line=dict(color="red", width=3))
    if selected is not None:
        r, c = selected
        fig.add_shape(type="rect", x0=c - .45, x1=c + .45, y0=r - .45, y1=r + .45, line=dict(color="#1f77ff", width=3, dash="dot"))
    # exactly the grid's cells: square cells, and no tick beyond the grid (-1, 7) from padding the range
    fig.update_yaxes(range=[h - .5, -.5], scaleanchor="x", constrain="domain", dtick=1)
    fig.update_xaxes(range=[-.5, w - .5], constrain="domain", dtick=1)
    return fig


def raster(spikes, title: str = "Spikes", ylabel: str = "neuron", labels=None, height: int = 320,
           subtitle: str | None = None) -> go.Figure:
    """Raster plot of ``spikes [T, N]`` (0/1): a dot at (t, n) for every spike. ``subtitle``: a line
    under the title (default: the count and rate of all its spikes)."""
    s = np.asarray(spikes)
    t, n = np.nonzero(s > 0)
    if subtitle is None:                                                   # a line of its own: half-width plots
        subtitle = f"{len(t)} spikes, rate {s.mean() if s.size else 0:.3f}"
    fig = _fig(f"{title}<br><sup>{subtitle}</sup>", height=height)
    fig.update_layout(margin=dict(_LAYOUT["margin"], t=60))
    custom = None if labels is None else np.asarray(labels)[n]
    # SVG, not Scattergl: each WebGL plot holds one of the browser's ~16 WebGL contexts, and a few re-drawn
    # rasters took the oldest away, the drawing canvas's (Encode went blank and deaf after 4 uploads)
    # a tick about half a row tall, so that neighbouring neurons' spikes stay apart (a full-row tick
    # drew a busy cell's 16 channels as one solid line per step); the plot area is about height - 110 px
    tick = float(np.clip(0.5 * (height - 110) / max(s.shape[1], 1), 1.5, 7))
    fig.add_trace(go.Scatter(
        x=t, y=n, mode="markers", marker=dict(symbol="line-ns-open", size=tick, color="black", line=dict(width=2)),
        customdata=custom, name="spikes",
        hovertemplate=("t=%{x}<br>" + ("%{customdata}" if labels is not None else f"{ylabel} %{{y}}") + "<extra></extra>")))
    steps = next(d for d in (1, 2, 5, 10, 20, 50, 100, 10**9) if s.shape[0] / d <= 10)  # ticks on whole steps
    fig.update_xaxes(title="time step t", range=[-0.5, s.shape[0] - 0.5], tick0=0, dtick=steps)
    fig.update_yaxes(title=ylabel, range=[-0.5, s.shape[1] - 0.5])
    return fig


EXAMPLE_COLORS = {"firing": "#1f77b4", "quiet": "#2ca02c"}   # the membrane trace's two example channels


def membrane_traces(v, threshold: float = 1.0, spikes=None, title: str = "Membrane potential") -> go.Figure:
    """Membrane potential ``v [T, C]`` of C neurons over time, with the threshold and ``spikes [T, C]``
    marked. Given the spikes, two example channels stand out, each with its own legend entry: the firing
    channel that fires least (charge over steps, spike, reset) and the non-firing one that charges
    highest (its peak in the legend); the others are grey and share one entry (a click on it hides
    them; hovering names a line's channel)."""
    v = np.asarray(v, float)                                                              # [T, C]
    T = len(v)
    fired = np.zeros(v.shape, bool) if spikes is None else np.asarray(spikes) > 0         # [T, C]
    counts = fired.sum(0)                                                                 # [C] spikes per channel
    examples = {}                                                                         # role -> (channel, legend)
    if spikes is not None and counts.max(initial=0) > 0:
        c = int(np.where(counts > 0, counts, T + 1).argmin())
        n = int(counts[c])
        examples["firing"] = (c, "fires at every step" if n == T else
                              f"fires {'once' if n == 1 else f'{n} times'}: charge, spike, reset")
    if spikes is not None and (counts == 0).any():
        c = int(np.where(counts == 0, v.max(0), -np.inf).argmax())
        examples["quiet"] = (c, f"never fires: peaks at {v[:, c].max():.2f}, under the threshold {threshold:g}")
    shown = {c for c, _ in examples.values()}
    others = [c for c in range(v.shape[1]) if c not in shown]
    fig = _fig(title, height=360)

    def trace(c, **kw):
        # ``v`` is read after the reset: at a spike the line climbs to the threshold, then drops to v
        t = np.concatenate([[s, s] if fired[s, c] else [s] for s in range(T)]).astype(int)
        y = np.concatenate([[threshold, v[s, c]] if fired[s, c] else [v[s, c]] for s in range(T)])
        fig.add_trace(go.Scatter(x=t, y=y, mode="lines", hovertemplate=f"channel {c}<br>t=%{{x}}<br>v=%{{y:.2f}}<extra></extra>", **kw))
    label = "other channels (hover a line)" if len(others) > 1 else "other channel"
    for c in others:
        trace(c, name=label, legendgroup="others", showlegend=c == others[0],
              line=dict(width=1 if examples else 1.5, color="#c8c8c8" if examples else None))
    for role, (c, what) in examples.items():
        trace(c, name=f"channel {c}: {what}", line=dict(width=3, color=EXAMPLE_COLORS[role]))
    if fired.any():
        t, c = np.nonzero(fired)
        fig.add_trace(go.Scatter(x=t, y=np.full(len(t), threshold), mode="markers", name="spike",
                                 customdata=c, hovertemplate="t=%{x}<br>channel %{customdata} spiked<extra></extra>",
                                 marker=dict(color="red", size=7, symbol="x")))
    fig.add_hline(y=threshold, line_dash="dash", line_color="red", annotation_text="threshold",
                  annotation_position="top left")
    fig.update_xaxes(title="time step t")
    fig.update_yaxes(title="membrane potential")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))
    return fig


def rate_maps(maps: dict[str, np.ndarray], title: str = "Firing rate per position") -> go.Figure:
    """One heatmap per layer of its firing rate ``[H, W]`` (mean over time and channels)."""
    names = list(maps)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names)
    for i, name in enumerate(names):
        z = np.asarray(maps[name])                                                            # [H, W]
        fig.add_trace(go.Heatmap(z=z, coloraxis="coloraxis", name=name,
                                 hovertemplate=f"{name}<br>row %{{y}}, col %{{x}}<br>rate %{{z:.3f}}<extra></extra>"),
                      row=1, col=i + 1)
        # square cells over the map's own extent: the panel shrinks to fit (unconstrained, the axes widened past it)
        fig.update_xaxes(constrain="domain", row=1, col=i + 1)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i + 1 if i else ''}", constrain="domain",
                         row=1, col=i + 1)
    fig.update_annotations(font_size=11)
    _panels_layout(fig, title, 340, coloraxis=dict(colorscale="Hot", cmin=0, colorbar=dict(title="firing rate")))
    return fig


def bars(values: dict[str, float], title: str, ylabel: str = "") -> go.Figure:
    fig = _fig(title)
    fig.add_trace(go.Bar(x=list(values), y=list(values.values()), name=ylabel))
    fig.update_yaxes(title=ylabel)
    return fig


def usage_bars(usages: dict[str, np.ndarray], title: str = "Code usage") -> go.Figure:
    """Side by side: how often each code is used, one panel per source (normalised to frequencies)."""
    names = list(usages)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names, shared_yaxes=True)
    for i, name in enumerate(names):
        c = np.asarray(usages[name], float)
        fig.add_trace(go.Bar(x=np.arange(len(c)), y=c / max(c.sum(), 1), name=name,
                             hovertemplate="code %{x}<br>frequency %{y:.4f}<extra></extra>"), row=1, col=i + 1)
        fig.update_xaxes(title="code id", row=1, col=i + 1)
    fig.update_yaxes(title="share of tokens", row=1, col=1)
    _panels_layout(fig, title, 340, showlegend=False)
    return fig


# the per-position usage's colours: a log scale over shares 0.001..1, from a blue that still shows on
# white (an unused code at a position is left white), so a code used in 1 image of 200 there shows too
USAGE_LOG_RANGE = (-3, 0)
USAGE_COLOURS = [[0, "#c6dbef"], [0.5, "#4292c6"], [1, "#08306b"]]


def usage_heatmaps(per_pos: dict[str, np.ndarray], title: str = "Code usage per position") -> go.Figure:
    """Heatmaps of counts ``[positions, K]``: which codes each position (49 on a 7x7 grid) uses, as the
    share of the source's images holding that code there, on a log colour scale (a few background codes
    hold nearly every image at the edges: on a linear scale every other code was near-white)."""
    names = list(per_pos)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names, shared_yaxes=True)
    for i, name in enumerate(names):
        m = np.asarray(per_pos[name], float)
        share = m / max(m.sum(1).max(), 1)                                              # [positions, K], 0..1
        with np.errstate(divide="ignore"):
            z = np.where(share > 0, np.log10(np.clip(share, 10.0 ** USAGE_LOG_RANGE[0], None)), np.nan)
        fig.add_trace(go.Heatmap(z=z, customdata=share, coloraxis="coloraxis", name=name, hoverongaps=False,
                                 hovertemplate="position %{y}<br>code %{x}<br>share %{customdata:.4f}<extra></extra>"),
                      row=1, col=i + 1)
        fig.update_xaxes(title="code id", row=1, col=i + 1)
    side = int(round(np.sqrt(len(per_pos[names[0]])))) if names else 0
    fig.update_yaxes(title=f"position (row*{side}+col)", autorange="reversed", row=1, col=1)
    ticks = list(range(USAGE_LOG_RANGE[0], USAGE_LOG_RANGE[1] + 1))
    _panels_layout(fig, title + " (white: unused there)", 400, coloraxis=dict(
        colorscale=USAGE_COLOURS, cmin=USAGE_LOG_RANGE[0], cmax=USAGE_LOG_RANGE[1],
        colorbar=dict(title="share (log)", tickvals=ticks, ticktext=[f"{10.0 ** t:g}" for t in ticks])))
    return fig


def where_used(shares: dict[str, np.ndarray], code: int) -> go.Figure:
    """Per source, a ``[h, w]`` heatmap of the share of its images (0..1) that hold ``code`` at each
    position, on one 0-based colour scale (so sources of any size compare, and unused is white)."""
    names = list(shares)
    top = max([float(np.max(m)) for m in shares.values() if np.size(m)] + [0.0])
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names)
    for i, name in enumerate(names):
        fig.add_trace(go.Heatmap(z=np.asarray(shares[name], float), coloraxis="coloraxis", name=name,
                                 texttemplate="%{z:.2f}",
                                 hovertemplate="row %{y}, col %{x}<br>%{z:.1%} of the images<extra></extra>"),
                      row=1, col=i + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=i + 1)
    title = f"Where code {code} is used (share of each source's images)"
    if names and top == 0:
        title = f"Code {code} is used nowhere here (a dead code in these sources)"
    _panels_layout(fig, title, 340, coloraxis=dict(colorscale="Blues", cmin=0, cmax=top or 1, colorbar=dict(title="share")))
    return fig


def lif_figure(current, h, v, s, threshold: float) -> go.Figure:
    """Input current, membrane potential and output spikes of one LIF neuron: ``h [T]`` after
    charging (dots) and ``v [T]`` after the reset, joined at each step, so a spike shows as a drop."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.25, 0.5, 0.25],
                        subplot_titles=["input current", "membrane potential: charge, then reset after a spike",
                                        "spikes"])
    t = np.arange(len(h))
    fig.add_trace(go.Scatter(x=t, y=current, mode="lines", name="input", line_shape="hv"), row=1, col=1)
    fig.add_trace(go.Scatter(x=np.repeat(t, 2), y=np.ravel(np.column_stack([h, v])), mode="lines", name="membrane",
                             line=dict(color="#1f77b4"), hoverinfo="skip"), row=2, col=1)   # [2T]: h_t then v_t
    fig.add_trace(go.Scatter(x=t, y=h, mode="markers", name="after charging", marker=dict(color="#1f77b4"),
                             customdata=v, hovertemplate="t=%{x}<br>charged to %{y:.2f}<br>after reset "
                                                         "%{customdata:.2f}<extra></extra>"), row=2, col=1)
    fig.add_hline(y=threshold, line_dash="dash", line_color="red", row=2, col=1)
    st = t[np.asarray(s) > 0]
    fig.add_trace(go.Scatter(x=st, y=np.ones(len(st)), mode="markers", name="spike",
                             marker=dict(symbol="line-ns-open", size=18, color="red")), row=3, col=1)
    fig.update_xaxes(title="time step t", row=3, col=1)
    fig.update_yaxes(showticklabels=False, showgrid=False, range=[0.5, 1.5], row=3, col=1)   # a spike row: no scale
    fig.update_layout(height=460, showlegend=False, title=f"LIF neuron: {count(len(st), 'spike')}", **_LAYOUT)
    return fig


def coding_figure(rows: dict[str, np.ndarray], title: str) -> go.Figure:
    """Spike trains ``{name: [T]}`` stacked as rows of a raster."""
    names = list(rows)
    s = np.stack([np.asarray(rows[n]) for n in names], 1)                 # [T, R]
    counts = {n: int(np.sum(rows[n])) for n in names}
    each = "; ".join(f"{n}: {count(k, 'spike')}" for n, k in counts.items())  # not one sum of unlike trains
    fig = raster(s, title, ylabel="", labels=names, height=260, subtitle=each)
    fig.update_yaxes(tickvals=list(range(len(names))), ticktext=names)
    return fig


def psp_figure(spikes, p, tau: float) -> go.Figure:
    t = np.arange(len(p))
    fig = _fig(f"PSP filter, tau_s = {tau:g}", height=300)
    fig.add_trace(go.Bar(x=t, y=spikes, name="spikes", marker_color="#bbbbbb"))
    fig.add_trace(go.Scatter(x=t, y=p, mode="lines+markers", name="PSP"))
    fig.update_xaxes(title="time step t")
    return fig


def quantizer_figure(spikes, weights, alphas, zs, alpha: float, z: float, decay: float) -> go.Figure:
    """Left: the spike train and M(s)'s weight ``decay^(T-1-t)`` per step. Right: z as the mix a varies
    (``zs`` at ``alphas``), with the chosen ``alpha``'s ``z`` marked and written beside it."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.15,   # two-line titles that do not meet when narrow
                        subplot_titles=[f"spikes, M(s) weights<br>{decay:g}^(T-1-t)", "z = (1-a) M(s)<br>+ a rate"])
    t = np.arange(len(spikes))
    fig.add_trace(go.Bar(x=t, y=spikes, name="spikes", marker_color="#bbbbbb"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t, y=weights, mode="lines+markers", name="weight"), row=1, col=1)
    fig.add_trace(go.Scatter(x=alphas, y=zs, mode="lines", name="z(a)"), row=1, col=2)
    fig.add_vline(x=alpha, line_dash="dash", line_color="red", row=1, col=2)
    # the value written on the side of the point the line leaves free: above it where the line falls
    # away towards the text, under it where the line climbs towards it
    side = "right" if alpha < 0.6 else "left"
    falls = zs[-1] < zs[0]
    above = falls == (side == "right")
    fig.add_trace(go.Scatter(x=[alpha], y=[z], mode="markers+text", text=[f"z = {z:.3f} at a = {alpha:.2f}"],
                             textposition=f"{'top' if above else 'bottom'} {side}", name=f"z at a = {alpha:.2f}",
                             marker=dict(color="red", size=9), showlegend=False), row=1, col=2)
    fig.update_xaxes(title="time step t", row=1, col=1)
    fig.update_xaxes(title="a", row=1, col=2)
    fig.update_yaxes(title="spike (bar), weight (line)", row=1, col=1)
    fig.update_yaxes(title="z", row=1, col=2)
    fig.update_layout(height=320, **_LAYOUT)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))   # under the plots: their width
    fig.update_annotations(font_size=13)
    return fig
