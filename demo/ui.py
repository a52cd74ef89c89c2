"""The studio's layout and event wiring (Gradio 6). Logic lives in :mod:`demo.studio`."""
from __future__ import annotations

import gradio as gr

from spiking_diffusion.metrics import E_AC_PJ, E_MAC_PJ

from .studio import CELLS, MAX_CORRECTOR_ROUNDS, Studio

CSS = ".pixelated img { image-rendering: pixelated; } .explain { font-size: 0.95em; }"

INTRO = """# Spiking-Diffusion studio
A vector-quantised spiking VAE turns a 28x28 image into a 7x7 grid of discrete **tokens** (codes from
a learned codebook). A **spiking denoiser** generates new token grids by starting fully masked and
unmasking a few cells per step; the spiking decoder turns tokens back into pixels."""


def safe_image(**kw) -> gr.Image:
    """A ``gr.Image`` whose unreadable uploads give a clear message instead of a stack trace.
    (Wraps the instance's preprocess: a subclass would make Gradio write a .pyi file here.)"""
    img = gr.Image(**kw)
    inner = img.preprocess

    def preprocess(payload):
        try:
            return inner(payload)
        except Exception as e:  # corrupt file, decompression bomb, unsupported format
            raise gr.Error(f"could not read the uploaded image ({type(e).__name__}: {e})", duration=8) from None

    img.preprocess = preprocess
    return img


def _explain(text: str):
    return gr.Markdown(text, elem_classes="explain")


def build_demo(studio: Studio) -> gr.Blocks:
    S = studio
    px = dict(format="png", elem_classes="pixelated", interactive=False)
    with gr.Blocks(title="Spiking-Diffusion studio") as demo:
        run, usage = gr.State(None), gr.State(None)
        gr.Markdown(INTRO)
        with gr.Row():
            model = gr.Dropdown(list(S.models), value=S.default_model, label="Model (data set)", elem_id="model", scale=1)
            with gr.Accordion("Model info", open=False):
                info = gr.Markdown(elem_id="model-info")
        if not S.models:
            gr.Markdown("**No checkpoints found.** Put a folder holding `config.json` + `model.safetensors` in the checkpoint folder.")

        with gr.Tabs():
            # 1. generate -----------------------------------------------------------------------
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        n = gr.Slider(1, S.max_batch, 16, step=1, label="Number of images", elem_id="num-images")
                        steps = gr.Slider(1, 49, 49, step=1, label="Steps", elem_id="steps",
                                          info="Fewer steps unmask more cells at once: faster, usually worse.")
                        t0, t1, p0, c0, c1, c2 = S.sampling_defaults(S.default_model)
                        temp = gr.Slider(0.05, 2.0, t0, step=0.05, label="Temperature", elem_id="temperature",
                                         info="Low: safe, repetitive codes. High: diverse, noisier.")
                        with gr.Accordion("More sampling settings", open=False):
                            temp_end = gr.Slider(0.05, 2.0, t1, step=0.05, label="Temperature at the last step",
                                                 elem_id="temperature-end",
                                                 info="The temperature moves linearly to this; equal: constant.")
                            top_p = gr.Slider(0.05, 1.0, p0, step=0.05, label="Top-p", elem_id="top-p",
                                              info="Draw each token only from the likeliest codes holding this much "
                                                   "probability; 1: from all.")
                            c_steps = gr.Slider(0, MAX_CORRECTOR_ROUNDS, c0, step=1, label="Corrector rounds",
                                                elem_id="corrector-steps",
                                                info="After the last step: re-mask a few random cells and sample them again "
                                                     "given all the others (not in the paper; 0: the paper's sampler).")
                            c_cells = gr.Slider(1, 49, c1, step=1, label="Cells per corrector round", elem_id="corrector-cells")
                            c_temp = gr.Slider(0.05, 2.0, c2, step=0.05, label="Corrector temperature",
                                               elem_id="corrector-temperature")
                        with gr.Row():
                            seed = gr.Number(0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed", elem_id="seed")
                            dice = gr.Button("Random seed", elem_id="dice", scale=0, min_width=120)
                        go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                    with gr.Column(scale=2):
                        grid = gr.Image(label="Samples (fills in while the diffusion runs)", elem_id="grid", **px)
                        status = gr.HTML(elem_id="gen-status")

            # 2. unmasking ----------------------------------------------------------------------
            with gr.Tab("Unmasking", id="unmasking", elem_id="tab-unmasking"):
                _explain("Scrub through the sampling steps of one generated image. Grey cells are still masked, "
                         "red outlines mark the cells unmasked at this step; hover a cell for its code id. "
                         "**Committed** decodes only the tokens fixed so far; **prediction** decodes the "
                         "denoiser's current guess for every cell.")
                with gr.Row():
                    image = gr.Slider(0, S.max_batch - 1, 0, step=1, label="Image", elem_id="image-index")
                    step = gr.Slider(1, 49, 49, step=1, label="Step", elem_id="step")
                    cell = gr.Dropdown(CELLS, value=24, label="Token cell (also selects it in Spikes)", elem_id="cell")
                with gr.Row():
                    play, pause = gr.Button("Play", elem_id="play"), gr.Button("Pause", elem_id="pause")
                with gr.Row():
                    token_fig = gr.Plot(label="7x7 tokens", elem_id="token-grid")
                    committed = gr.Image(label="Committed tokens, decoded", elem_id="committed", **px)
                    predicted = gr.Image(label="Denoiser's full prediction, decoded", elem_id="predicted", **px)
                caption = gr.Markdown(elem_id="unmask-caption")
                with gr.Row():
                    export = gr.Button("Export run as GIF + MP4", elem_id="export")
                    gif, mp4 = gr.File(label="GIF", elem_id="gif", height=90), gr.File(label="MP4", elem_id="mp4", height=90)
                timer = gr.Timer(0.6, active=False)

            # 3. spikes -------------------------------------------------------------------------
            with gr.Tab("Spikes", id="spikes", elem_id="tab-spikes") as spikes_tab:
                _explain("Every token cell drives D neurons (16 in the paper) of the **adaptive spike generator** (ASG) for T time "
                         "steps; the decoder reads these spike trains. A dot is one spike. The encoder's spikes "
                         "come from re-encoding the generated image. The membrane trace shows each ASG neuron "
                         "charging up and resetting when it crosses the threshold (dashed).")
                with gr.Row():
                    s_cell = gr.Dropdown(CELLS, value=24, label="Token cell", elem_id="spikes-cell")
                    s_go = gr.Button("Show spikes", elem_id="spikes-btn")
                s_note = gr.Markdown(elem_id="spikes-note")
                with gr.Row():
                    r_cell, r_enc = gr.Plot(elem_id="raster-cell"), gr.Plot(elem_id="raster-encoder")
                r_all = gr.Plot(elem_id="raster-all")
                r_maps = gr.Plot(elem_id="rate-maps")
                with gr.Row():
                    r_rates, r_mem = gr.Plot(elem_id="rate-bars"), gr.Plot(elem_id="membrane")

            # 4. codebook -----------------------------------------------------------------------
            with gr.Tab("Codebook", id="codebook", elem_id="tab-codebook") as codebook_tab:
                _explain("Which of the K codes get used? A code never used is **dead**; the **perplexity** "
                         "exp(entropy) is the number of equally used codes that would give the same spread.")
                c_go = gr.Button("Compute usage", elem_id="codebook-btn")
                c_stats = gr.Markdown(elem_id="codebook-stats")
                c_bars = gr.Plot(elem_id="usage-bars")
                c_heat = gr.Plot(elem_id="usage-heatmap")
                with gr.Row():
                    atlas = gr.Image(label="Code atlas: each code decoded as a whole 7x7 grid (row-major, 16 per row)",
                                     elem_id="atlas", **px)
                    with gr.Column():
                        code = gr.Slider(0, 1023, 0, step=1, label="Code", elem_id="code")
                        code_img = gr.Image(label="This code, decoded", elem_id="code-image", **px)
                code_where = gr.Plot(elem_id="code-where")

            # 5. encode -------------------------------------------------------------------------
            with gr.Tab("Encode & reconstruct", id="encode", elem_id="tab-encode"):
                _explain("Upload a picture or draw one. It is converted to the model's format (28x28, grey or RGB, "
                         "light strokes on dark like MNIST), encoded to 7x7 tokens and decoded back.")
                with gr.Row():
                    upload = safe_image(label="Upload", type="numpy", image_mode=None, sources=["upload", "clipboard"],
                                       elem_id="upload")
                    sketch = gr.Sketchpad(label="Draw", type="numpy", canvas_size=(280, 280), elem_id="sketch")
                with gr.Row():
                    invert = gr.Radio(["auto", "yes", "no"], value="auto", label="Invert colours", elem_id="invert")
                    e_up = gr.Button("Encode upload", variant="primary", elem_id="encode-btn")
                    e_sk = gr.Button("Encode drawing", elem_id="encode-sketch-btn")
                e_note = gr.Markdown(elem_id="encode-note")
                with gr.Row():
                    e_in = gr.Image(label="Model input (28x28)", elem_id="encode-input", **px)
                    e_tok = gr.Plot(elem_id="encode-tokens")
                    e_rec = gr.Image(label="Reconstruction", elem_id="reconstruction", **px)
                with gr.Row():
                    e_enc, e_asg = gr.Plot(elem_id="encode-raster"), gr.Plot(elem_id="encode-asg")

            # 6. learn --------------------------------------------------------------------------
            with gr.Tab("Learn", id="learn", elem_id="tab-learn") as learn_tab:
                with gr.Row():
                    with gr.Column(scale=1):
                        _explain("### A LIF neuron\nA leaky integrate-and-fire neuron adds its input to a membrane "
                                 "potential that leaks back towards rest (time constant tau). Crossing the threshold "
                                 "emits a spike; a **hard** reset then sets the potential to 0, a **soft** reset "
                                 "subtracts the threshold. Small currents never fire; bigger ones fire more often.")
                        l_i = gr.Slider(-1, 4, 1.5, step=0.05, label="Input current", elem_id="lif-current")
                        l_th = gr.Slider(0.1, 3, 1.0, step=0.05, label="Threshold", elem_id="lif-threshold")
                        l_tau = gr.Slider(1, 20, 2.0, step=0.5, label="Time constant tau", elem_id="lif-tau")
                        l_reset = gr.Radio(["hard", "soft"], value="hard", label="Reset", elem_id="lif-reset")
                        l_T = gr.Slider(5, 100, 40, step=1, label="Time steps", elem_id="lif-steps")
                        l_note = gr.Markdown(elem_id="lif-note")
                    l_fig = gr.Plot(elem_id="lif-plot", scale=2)
                with gr.Row():
                    with gr.Column(scale=1):
                        _explain("### Direct versus rate coding\nThis model feeds each pixel **directly**: the "
                                 "value (minus 0.5) enters the first layer at every time step, and the first LIF "
                                 "layer turns it into spikes. **Rate coding** instead sends random spikes with a "
                                 "probability equal to the pixel's brightness.")
                        k_p = gr.Slider(0, 1, 0.7, step=0.01, label="Pixel value", elem_id="coding-pixel")
                        k_T = gr.Slider(1, 64, 16, step=1, label="Time steps T", elem_id="coding-steps")
                        k_seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                        k_note = gr.Markdown(elem_id="coding-note")
                    k_fig = gr.Plot(elem_id="coding-plot", scale=2)
                with gr.Row():
                    with gr.Column(scale=1):
                        _explain("### The PSP filter\nThe spike-train loss compares spike trains after a "
                                 "post-synaptic-potential filter: each spike bumps a trace that decays by 1/tau per "
                                 "step, so trains that spike at nearly the same times look alike.")
                        p_rate = gr.Slider(0, 1, 0.3, step=0.01, label="Spike rate", elem_id="psp-rate")
                        p_tau = gr.Slider(1, 10, 2, step=0.5, label="tau_s", elem_id="psp-tau")
                        p_T = gr.Slider(4, 100, 32, step=1, label="Time steps", elem_id="psp-steps")
                        p_seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                    p_fig = gr.Plot(elem_id="psp-plot", scale=2)
                with gr.Row():
                    with gr.Column(scale=1):
                        _explain("### The quantiser's dual coding\nBefore looking up the nearest code, the encoder's "
                                 "spikes become one number per neuron: a mix of the **membrane-potential** read-out "
                                 "M(s) (recent spikes weigh most) and the **firing rate**, with a learned weight a.")
                        q_rate = gr.Slider(0, 1, 0.4, step=0.01, label="Spike rate", elem_id="quant-rate")
                        q_a = gr.Slider(0, 1, 0.5, step=0.01, label="Mix a", elem_id="quant-alpha")
                        q_T = gr.Slider(1, 64, 16, step=1, label="Time steps T", elem_id="quant-steps")
                        q_seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                        q_note = gr.Markdown(elem_id="quant-note")
                    q_fig = gr.Plot(elem_id="quant-plot", scale=2)
                with gr.Row():
                    with gr.Column(scale=1):
                        _explain("### Energy of a generation\nA spiking layer only works when a spike arrives: one "
                                 f"addition (AC, ~{E_AC_PJ} pJ) per spike per connection at each of the T steps, "
                                 f"against one multiply-add (MAC, ~{E_MAC_PJ} pJ) per connection in an ordinary "
                                 "network. Estimated for your last generation.")
                        en_go = gr.Button("Estimate energy of my last generation", elem_id="energy-btn")
                        en_md = gr.Markdown(elem_id="energy-note")
                    en_fig = gr.Plot(elem_id="energy-plot", scale=2)

        # --- wiring ------------------------------------------------------------------------------
        q = dict(api_visibility="private")
        demo.load(S.model_info, model, info, api_name="model_info")
        model.change(S.model_info, model, info, **q)
        sampling = [temp, temp_end, top_p, c_steps, c_cells, c_temp]
        model.change(S.sampling_defaults, model, sampling, **q)  # each model's chosen settings
        dice.click(S.random_seed, None, seed, api_name="random_seed")
        unmask_io = ([run, image, step, cell], [token_fig, committed, predicted, caption])
        gr.on([image.change, step.change, cell.change], S.unmask, *unmask_io, api_name="unmask", show_progress="hidden")
        go.click(S.generate, [model, n, steps, temp, seed, *sampling[1:]], [grid, status, run], api_name="generate").success(
            lambda r: (gr.update(value=0, maximum=len(r.images) - 1), gr.update(value=len(r.trace), maximum=len(r.trace))),
            run, [image, step], **q).then(S.unmask, *unmask_io, **q)
        play.click(lambda st, r: (gr.Timer(active=True), 1 if r is None or st >= len(r.trace) else st),
                   [step, run], [timer, step], **q)
        pause.click(lambda: gr.Timer(active=False), None, timer, **q)
        timer.tick(lambda st, r: (gr.Timer(active=r is not None and st + 1 < len(r.trace)),
                                  min(st + 1, len(r.trace)) if r is not None else st),
                   [step, run], [timer, step], **q)
        export.click(S.export, [run, image], [gif, mp4], api_name="export")
        cell.change(lambda c: c, cell, s_cell, **q)

        spikes_io = ([run, image, s_cell], [r_cell, r_all, r_enc, r_maps, r_rates, r_mem, s_note])
        s_go.click(S.spikes, *spikes_io, api_name="spikes")
        spikes_tab.select(S.spikes, *spikes_io, **q)
        s_cell.change(S.spikes, *spikes_io, **q)

        codebook_io = ([model, run], [c_bars, c_heat, c_stats, atlas, usage, code])
        code.release(S.code, [model, usage, code], [code_img, code_where], api_name="code")
        c_go.click(S.codebook, *codebook_io, api_name="codebook").then(S.code, [model, usage, code], [code_img, code_where], **q)
        codebook_tab.select(S.codebook, *codebook_io, **q).then(S.code, [model, usage, code], [code_img, code_where], **q)

        enc_out = [e_in, e_tok, e_rec, e_enc, e_asg, e_note]
        e_up.click(S.encode, [model, upload, invert], enc_out, api_name="encode")
        e_sk.click(S.encode_sketch, [model, sketch, invert], enc_out, api_name="encode_sketch")

        lif_in, coding_in = [l_i, l_th, l_tau, l_reset, l_T], [k_p, k_T, k_seed]
        psp_in, quant_in = [p_rate, p_tau, p_T, p_seed], [q_rate, q_a, q_T, q_seed]
        gr.on([c.change for c in lif_in], S.lif, lif_in, [l_fig, l_note], api_name="lif", show_progress="hidden")
        gr.on([c.change for c in coding_in], S.coding, coding_in, [k_fig, k_note], api_name="coding", show_progress="hidden")
        gr.on([c.change for c in psp_in], S.psp, psp_in, p_fig, api_name="psp", show_progress="hidden")
        gr.on([c.change for c in quant_in], S.quantizer, quant_in, [q_fig, q_note], api_name="quantizer", show_progress="hidden")
        learn_tab.select(S.lif, lif_in, [l_fig, l_note], **q).then(S.coding, coding_in, [k_fig, k_note], **q).then(
            S.psp, psp_in, p_fig, **q).then(S.quantizer, quant_in, [q_fig, q_note], **q)
        en_go.click(S.energy, run, [en_md, en_fig], api_name="energy")
    return demo
