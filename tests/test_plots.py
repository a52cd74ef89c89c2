"""Pure functions of the studio: plots (arrays in, figures out), media helpers, teaching maths."""
import numpy as np
import pytest
import torch

from demo import media, plots
from spiking_diffusion import teaching
from spiking_diffusion.spiking import lif, psp


def test_raster_marks_exactly_the_spikes():
    rng = np.random.default_rng(0)
    s = (rng.random((16, 10)) < 0.3).astype(float)
    fig = plots.raster(s, "x")
    tr = fig.data[0]
    got = sorted(zip(np.asarray(tr.x).tolist(), np.asarray(tr.y).tolist()))
    assert got == sorted(zip(*[a.tolist() for a in np.nonzero(s)]))
    assert f"{int(s.sum())} spikes" in fig.layout.title.text


def test_raster_labels_and_empty():
    fig = plots.raster(np.zeros((4, 3)), "none", labels=["a", "b", "c"])
    assert len(fig.data[0].x) == 0
    fig = plots.coding_figure({"a": np.array([1, 0, 1]), "b": np.array([0, 1, 0])}, "t")
    assert list(fig.data[0].customdata) == ["a", "b", "a"]


def test_token_grid_marks_masked_unmasked_and_selected():
    tok = np.arange(49).reshape(7, 7) % 10
    tok[0, :3] = 10  # mask id
    unmasked = np.zeros((7, 7), bool)
    unmasked[2, 4] = unmasked[5, 5] = True
    fig = plots.token_grid(tok, 10, unmasked, selected=(1, 1))
    heat = fig.data[1]
    assert np.isnan(np.asarray(heat.z, float)[0, :3]).all()
    assert np.asarray(heat.text)[0, 0] == "?" and np.asarray(heat.text)[3, 3] == str(tok[3, 3])
    assert np.asarray(heat.customdata)[2, 4, 1] == "unmasked now"
    rects = [(s.x0 + .5, s.y0 + .5) for s in fig.layout.shapes if s.line.color == "red"]
    assert sorted(rects) == [(4, 2), (5, 5)]
    assert any(s.line.color == "#1f77ff" for s in fig.layout.shapes)
    # the axes span the cells, row 0 on top, so no tick falls outside the grid (a padded range showed -1 and 7)
    assert tuple(fig.layout.xaxis.range) == (-0.5, 6.5) and tuple(fig.layout.yaxis.range) == (6.5, -0.5)


def test_usage_membrane_and_maps_figures():
    fig = plots.usage_bars({"a": np.array([1, 0, 3]), "b": np.array([0, 0, 2])})
    assert np.allclose(fig.data[0].y, [0.25, 0, 0.75]) and np.allclose(fig.data[1].y, [0, 0, 1])
    assert fig.layout.yaxis.title.text == "share of tokens"                # what the bars' height is
    fig = plots.usage_heatmaps({"a": np.eye(49, 8)})
    assert np.asarray(fig.data[0].z).shape == (49, 8) and fig.layout.coloraxis.colorbar.title.text == "share (log)"
    # a log scale: a code in 1 of 200 images at a position is coloured, not near-white beside a share of 1;
    # an unused code is left blank (white); the hover gives the share itself
    counts = np.zeros((2, 4))
    counts[0, 0], counts[0, 1], counts[1, 2] = 199, 1, 200
    trace = plots.usage_heatmaps({"a": counts}).data[0]
    z, share = np.asarray(trace.z, float), np.asarray(trace.customdata, float)
    assert np.isclose(z[0, 0], np.log10(0.995)) and z[1, 2] == 0 and np.isclose(z[0, 1], np.log10(1 / 200)) and np.isnan(z[0, 3])
    assert np.isclose(share[0, 1], 0.005) and share[0, 3] == 0
    # read after the reset (0 at a spike); channel 0 fires twice, 1 once, 2 and 3 never (3 charges higher)
    v = np.array([[0.0, 0.5, 0.2, 0.3], [0.0, 0.0, 0.4, 0.6], [0.5, 0.3, 0.5, 0.9]])
    fired = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    fig = plots.membrane_traces(v, 1.0, fired)
    by_name = {d.name: d for d in fig.data}
    # the examples: the firing channel that fires least, the quiet one that charges highest; the rest grey
    quiet_label = "channel 3: never fires: peaks at 0.90, under the threshold 1"
    assert list(by_name) == ["other channels (hover a line)", "channel 1: fires once: charge, spike, reset",
                             quiet_label, "spike"]
    assert [d.name for d in fig.data].count("other channels (hover a line)") == 2     # channels 0 and 2, one entry
    assert [d.showlegend for d in fig.data[:2]] == [True, False] and "channel 2" in fig.data[1].hovertemplate
    # the potential is read after the reset: at a spike the line climbs to the threshold, then drops
    one = by_name["channel 1: fires once: charge, spike, reset"]
    assert list(one.x) == [0, 1, 1, 2] and list(one.y) == [0.5, 1.0, 0.0, 0.3]
    assert list(by_name[quiet_label].y) == [0.3, 0.6, 0.9]
    assert list(by_name["spike"].x) == [0, 1, 1] and list(by_name["spike"].customdata) == [0, 0, 1]
    quiet = plots.membrane_traces(v, 1.0, np.zeros_like(fired))                      # nothing fires: one example
    assert [d.name for d in quiet.data][-2:] == ["other channels (hover a line)", quiet_label]
    busy = plots.membrane_traces(v, 1.0, np.ones_like(fired))                        # no charging to show
    assert [d.name for d in busy.data][-2] == "channel 0: fires at every step"
    unknown = plots.membrane_traces(v, 1.0)                                          # spikes not given: no claims
    assert [d.name for d in unknown.data] == ["other channels (hover a line)"] * 4
    fig = plots.rate_maps({"l1": np.ones((7, 7)), "l2": np.zeros((14, 14))})
    assert [np.asarray(d.z).shape for d in fig.data] == [(7, 7), (14, 14)]
    assert fig.layout.coloraxis.colorbar.title.text == "firing rate"
    # each panel spans its own map (square cells shrink the panel's domain, not widen its axes)
    assert fig.layout.yaxis2.scaleanchor == "x2" and fig.layout.xaxis2.constrain == fig.layout.yaxis2.constrain == "domain"
    assert fig.layout.yaxis2.autorange == "reversed"                        # row 0 at the top, as in an image
    assert len(plots.where_used({"g": np.ones((7, 7))}, 3).data) == 1
    assert len(plots.psp_figure(np.array([1, 0]), np.array([.5, .25]), 2).data) == 2


def test_rasters_draw_without_webgl():
    """A WebGL trace holds one of the browser's few WebGL contexts; the studio redraws rasters often,
    and used-up contexts blanked the drawing canvas (Encode)."""
    s = np.random.default_rng(0).random((16, 3000)) < 0.2
    for fig in (plots.raster(s), plots.coding_figure({"a": s[:, 0]}, "t")):
        assert fig.data and not any(t.type.endswith("gl") for t in fig.data)


def test_lif_figure_shows_each_reset_as_a_drop():
    from spiking_diffusion import teaching

    x = np.full(10, 2.5)
    for reset in ("hard", "soft"):
        h, v, s = teaching.lif_simulate(x, reset=reset)
        line = plots.lif_figure(x, h, v, s, 1.0).data[1]                 # the membrane: h_t, then v_t, per step
        assert list(line.x[:4]) == [0, 0, 1, 1] and np.allclose(line.y[0::2], h) and np.allclose(line.y[1::2], v)
        assert s.sum() > 0 and (np.asarray(line.y[1::2])[s > 0] < h[s > 0]).all(), reset
    one = np.zeros(10)
    one[4] = 1
    assert plots.lif_figure(x, h, v, one, 1.0).layout.title.text == "LIF neuron: 1 spike"     # not "1 spikes"


def test_coding_raster_counts_each_train_on_its_own():
    title = plots.coding_figure({"rate": np.array([1, 0, 1, 1]), "LIF": np.array([0, 1, 0, 0])}, "Pixel").layout.title.text
    assert "rate: 3 spikes; LIF: 1 spike" in title and "4 spikes" not in title


def test_where_used_compares_shares_on_one_scale_from_zero():
    fig = plots.where_used({"test": np.full((7, 7), 0.5), "generated": np.zeros((7, 7))}, 3)
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0, 0.5) and "dead" not in fig.layout.title.text
    dead = plots.where_used({"test": np.zeros((7, 7))}, 0)
    assert dead.layout.coloraxis.cmin == 0 and "dead code" in dead.layout.title.text


def test_lif_matches_spikingjelly():
    x = np.array([0.3, 1.5, 2.5, 0.0, 3.0, 1.9, 2.2, -1.0])
    node = lif()
    node.store_v_seq = True
    s = node(torch.tensor(x, dtype=torch.float32).view(-1, 1)).view(-1).numpy()
    h, v, s2 = teaching.lif_simulate(x)
    assert np.array_equal(s, s2)
    assert np.allclose(v, node.v_seq.view(-1).numpy(), atol=1e-6)


def test_an_input_at_the_threshold_never_fires():
    """The Learn tab says a constant input at or below the threshold never fires: charged the plain way,
    the membrane (1 - 2^-t) rounded up to the threshold and fired at step 54 (float64; the Learn tab's
    100 steps showed "1 spike"); with tau just above 1 the gap (1 - 1/tau)^t underflowed to 0 and fired.
    Just above the threshold, it fires."""
    for threshold, tau in ((1.0, 2.0), (2.0, 2.0), (0.5, 3.0), (1.0, 1.5), (3.0, 20.0), (0.1, 1.0001),
                           (1.0, 1.00001), (3.0, 1 + 1e-9)):   # the Learn tab's ranges (tau any number in 1..20)
        for reset in ("hard", "soft"):
            for current in (threshold, threshold - 1e-9, 0.5 * threshold):
                assert teaching.lif_simulate(np.full(100, current), threshold, tau, reset)[2].sum() == 0, (
                    threshold, tau, reset, current)
            assert teaching.lif_simulate(np.full(400, threshold * 1.001), threshold, tau, reset)[2].sum() > 0
    assert teaching.lif_simulate(np.full(5, 1.0), tau=1.0)[2].sum() == 5     # tau 1: V = X at once, >= fires
    # the Learn tab's direct-coding neuron (weight 4, bias 1) at pixel 0.5: input 1 = the threshold
    assert teaching.lif_simulate(4 * teaching.direct_code(0.5, 64) + 1)[2].sum() == 0


def test_lif_soft_reset_and_errors():
    _, v, s = teaching.lif_simulate(np.full(10, 1.5), threshold=1.0, tau=1.0, reset="soft")
    assert s.sum() > 0 and v.max() < 1.0 + 1e-9
    with pytest.raises(ValueError):
        teaching.lif_simulate([1.0], reset="sideways")


def test_psp_and_dual_code_match_library():
    s = teaching.rate_code(0.4, 20, seed=1)
    assert np.allclose(teaching.psp_filter(s, 2.0), psp(torch.tensor(s), 2.0).numpy())
    d = teaching.dual_code(np.array([1, 0, 0, 1]), 0.5)
    assert np.isclose(d["membrane"], 0.8**3 + 1) and np.isclose(d["rate"], 0.5)
    assert np.isclose(d["z"], 0.5 * d["membrane"] + 0.25)
    assert teaching.rate_code(1.0, 5).sum() == 5 and teaching.rate_code(0.0, 5).sum() == 0
    assert np.allclose(teaching.direct_code(0.7, 3), 0.2)


def test_tile_and_show():
    imgs = np.zeros((5, 28, 28, 1), np.uint8)
    out = media.tile(imgs, scale=2, pad=2)
    assert out.shape == (2 * 58 + 2, 3 * 58 + 2, 3)
    assert media.show(np.zeros((28, 28, 1), np.uint8), 8).shape == (224, 224)


@pytest.mark.parametrize("arr,ch", [
    (np.zeros((100, 60, 3), np.uint8), 1), (np.full((28, 28), 255, np.uint8), 1),
    (np.zeros((50, 50, 4), np.uint8), 3), (np.random.rand(28, 28), 1), (np.zeros((28, 28, 1), np.uint8), 3)])
def test_prepare_image_any_input(arr, ch):
    from spiking_diffusion.image_input import prepare_image

    x, note = prepare_image(arr, ch)
    assert x.shape == (1, ch, 28, 28) and x.dtype == np.float32 and 0 <= x.min() <= x.max() <= 1
    assert isinstance(note, str)


def test_export_writes_gif_and_mp4(tmp_path):
    import imageio.v2 as imageio

    from demo.frames import write_gif

    frames = list(np.random.randint(0, 255, (5, 60, 90, 3), np.uint8))
    gif = str(write_gif(frames, tmp_path / "unmasking.gif"))
    mp4 = str(media.write_mp4(frames, tmp_path / "unmasking.mp4", fps=10, hold_s=1.0))
    assert len(imageio.mimread(gif)) >= 5
    assert (tmp_path / "unmasking.mp4").stat().st_size > 1000 and mp4.endswith(".mp4")


def test_token_grid_image_clicks_map_back_to_their_cells():
    """A click at any cell's pixels gives that cell; the cell shows its code's colour (masked: grey)."""
    from demo import frames

    rng = np.random.default_rng(0)
    tok = rng.integers(0, 32, (7, 7))
    tok[0, 0] = 32                                                       # masked
    img = frames.token_grid_image(tok, 32, selected=(6, 6), title="t")
    colors = frames.code_colors(32)
    for r in range(7):
        for c in range(7):
            x, y = frames.GRID_LEFT + c * 32 + 3, frames.GRID_TOP + r * 32 + 3   # inside, off the text
            assert frames.cell_at(x, y, 7) == r * 7 + c
            want = frames.MASKED if tok[r, c] == 32 else tuple(colors[tok[r, c]])
            assert tuple(img[y, x]) == want
    assert frames.cell_at(frames.GRID_LEFT - 1, frames.GRID_TOP + 5, 7) is None       # the row numbers
    assert frames.cell_at(frames.GRID_LEFT + 7 * 32, frames.GRID_TOP + 5, 7) is None  # the colour bar


def test_tile_index_inverts_tile():
    imgs = np.stack([np.full((28, 28, 1), 10 * i, np.uint8) for i in range(10)])   # image i: grey 10*i
    grid = media.tile(imgs)
    seen = set()
    for y in range(0, grid.shape[0], 5):
        for x in range(0, grid.shape[1], 5):
            i = media.tile_index(x, y, 10, 28, 28)
            if i is None:
                assert grid[y, x].tolist() == [255, 255, 255]                      # a gap or an empty slot
            else:
                assert grid[y, x].tolist() == [10 * i] * 3
                seen.add(i)
    assert seen == set(range(10))


def test_code_at_inverts_the_numbered_code_atlas():
    """The atlas numbers its rows (first code) and columns (offset); a click maps back to the tile's code."""
    from demo import frames

    tiles = np.stack([np.full((28, 28, 1), 10 * i, np.uint8) for i in range(20)])   # code i: grey 10*i
    atlas = frames.code_atlas_image(tiles, cols=8)                                  # 3 rows: 0, 8, 16
    plain = media.tile(tiles, cols=8, scale=frames.ATLAS_SCALE)
    step = 28 * frames.ATLAS_SCALE + 2                                              # a tile and its gap
    left, top = frames.atlas_origin(20, 8)
    bottom = top + plain.shape[0]
    assert (atlas[top:bottom, left:] == plain).all()                                # the tiles, moved by the margin
    for r in range(3):                                                              # each row's number at its left
        assert (atlas[top + 2 + r * step:top + step + r * step, :left] < 128).any()
    assert (atlas[bottom:, left:] < 128).any() and (atlas[bottom:, :left] == 255).all()   # column numbers under
    seen = set()
    for y in range(0, atlas.shape[0], 5):
        for x in range(0, atlas.shape[1], 5):
            i = frames.code_at(x, y, 20, 28, 28, cols=8)
            if i is not None:
                assert atlas[y, x].tolist() == [10 * i] * 3
                seen.add(i)
    assert seen == set(range(20)) and frames.code_at(5, top + 40, 20, 28, 28, cols=8) is None   # a row number
    big = frames.code_atlas_image(np.zeros((1024, 7, 7, 1), np.uint8), cols=16)   # 4-digit row numbers: not cut
    left = frames.atlas_origin(1024, 16)[0]
    assert left > frames.atlas_origin(20, 8)[0] and (big[:, :4] == 255).all() and (big[:, 4:left] < 128).any()


def test_step_axis_marks_both_phases():
    from demo import frames

    kinds = ["unmask"] * 6 + ["correct"] * 4
    html = frames.step_axis_html(kinds, 8)
    assert 'data-unmask="6" data-correct="4" data-step="8"' in html
    assert ">unmasking 1-6<" in html and ">corrector 7-10<" in html                 # drawn in the bands
    assert frames.step_label(kinds, 8) == "corrector round 2/4" and frames.step_label(kinds, 6) == "unmasking step 6/6"
    strip = frames.axis_strip(kinds, 3, 100)
    assert tuple(strip[7, 5]) == frames.PHASE_COLORS["unmask"] and tuple(strip[7, 95]) != frames.PHASE_COLORS["correct"]
    assert tuple(frames.axis_strip(kinds, 10, 100)[7, 93]) == frames.PHASE_COLORS["correct"]
    assert "phase-legend" not in html                                  # both bands wide enough for their names


def test_step_axis_names_a_narrow_phase_under_the_axis():
    """One unmasking step before 60 corrector rounds: its band is too narrow for its name (it read "unm"), so
    both phases are named in a legend under the axis and the band's name is its hover title."""
    from demo import frames

    html = frames.step_axis_html(["unmask"] + ["correct"] * 60, 1)
    bands, legend = html.split('class="phase-legend"')
    assert 'title="unmasking 1"' in bands and ">unmasking 1<" not in bands
    assert "unmasking 1" in legend and "corrector 2-61" in legend


def test_figures_with_panels_keep_their_title_above_the_panel_titles():
    """A figure title over subplot titles sits at the top of a taller margin (they used to overlap)."""
    counts = {"test set": np.arange(8), "generated": np.ones(8)}
    figs = [plots.usage_bars(counts), plots.usage_heatmaps({k: np.ones((4, 8)) for k in counts}),
            plots.where_used({k: np.zeros((2, 2)) for k in counts}, 3), plots.rate_maps({"enc": np.ones((2, 2))})]
    for fig in figs:
        panel_titles = [a.text for a in fig.layout.annotations]
        assert fig.layout.title.text not in panel_titles and fig.layout.title.yref == "container"
        assert fig.layout.title.yanchor == "top" and fig.layout.margin.t >= 80


def test_animation_frames_label_the_two_decoded_images():
    from demo import frames

    grid = frames.token_grid_image(np.full((7, 7), 3), 128, title="Tokens after step 1/2")   # [270, 302, 3]
    black = np.zeros((224, 224), np.uint8)
    f = frames.animation_frame(grid, black, black, ["unmask", "correct"], 1, "unmasking step 1/1", gap=8)
    x0 = 8 + grid.shape[1] + 8                                             # the committed image's left edge
    strip, image = f[8:8 + frames.LABEL_H, x0:x0 + 224], f[8 + frames.LABEL_H:8 + frames.LABEL_H + 224, x0:x0 + 224]
    assert (image == 0).all()                                              # the image sits under its label strip
    assert 0 < (strip < 128).mean() < 0.3                                  # which holds text, not image
    credited = frames.animation_frame(grid, black, black, ["unmask", "correct"], 1, "unmasking step 1/1", gap=8,
                                      credit="mnist · seed 0 · image 1")
    assert credited.shape[0] > f.shape[0] and (credited[:f.shape[0] - 4] == f[:-4]).all()   # a line added under
    assert (credited[f.shape[0]:] < 200).any()                             # which holds the credit's text


def test_raster_ticks_fall_on_whole_time_steps():
    for T, dtick in [(4, 1), (16, 2), (64, 10), (100, 10)]:
        fig = plots.raster(np.zeros((T, 3)))
        assert (fig.layout.xaxis.tick0, fig.layout.xaxis.dtick) == (0, dtick)


def test_layer_labels_name_layers_as_a_reader_says_them():
    names = ("encoder.lif1", "encoder.block2.2", "decoder.block1.2", "asg.lif", "conv3.2", "lif1", "other")
    assert [plots.layer_label(n) for n in names] == ["encoder layer 1", "encoder layer 2", "decoder layer 1",
                                                     "spike generator (ASG)", "denoiser layer 3", "denoiser layer 1", "other"]


def test_raster_ticks_are_shorter_than_a_row():
    """A busy cell's 16 channels drew as one solid line per time step: each tick is now about half a
    row of the plot tall (its plot area is about height - 110 px), so neighbouring spikes stay apart."""
    for rows in (16, 4):
        fig = plots.raster(np.ones((16, rows)), height=320)
        assert fig.data[0].marker.size < (320 - 110) / rows, rows                 # a gap between neighbours
    assert plots.raster(np.ones((16, 784)), height=380).data[0].marker.size >= 1   # 784 rows: still visible


def test_quantizer_figure_marks_z_at_the_chosen_mix():
    """The right panel names z's value at the chosen a on the curve (it was only in the text under it)."""
    from spiking_diffusion import teaching

    s = teaching.rate_code(0.4, 16, 0)
    alphas = np.linspace(0, 1, 21)
    zs = [teaching.dual_code(s, a, 0.8)["z"] for a in alphas]
    z = teaching.dual_code(s, 0.3, 0.8)["z"]
    fig = plots.quantizer_figure(s, 0.8 ** np.arange(15, -1, -1), alphas, zs, 0.3, z, 0.8)
    marked = [d for d in fig.data if list(d.x) == [0.3]]
    assert len(marked) == 1 and marked[0].y[0] == pytest.approx(z) and f"z = {z:.3f}" in marked[0].text[0]
    assert fig.layout.yaxis2.title.text == "z"


def test_learn_coding_note_counts_the_lif_spikes_in_words():
    """Pixel 0.5 feeds the threshold itself (never fires, at any T); one spike is "1 spike", not "1 spikes"."""
    from demo import learn

    assert "turns it into 0 spikes" in learn.coding(0.5, 64, 0)[1]
    assert "turns it into 1 spike." in learn.coding(1.0, 1, 0)[1]
