#!/usr/bin/env python
"""A Gradio demo of the shipped MNIST pipelines: sampling, img2img / SDEdit and plug-and-play.

    pip install -e .[demo]
    python examples/app.py                    # http://127.0.0.1:7860
    python examples/app.py --port 7861 --unconditional user/ddpm-mnist --conditional user/ddpm-mnist-cfg

It loads the pipelines once, with the CPU fast path for sampling (bf16 forwards where the CPU runs bf16
natively), and offers three tabs:

- **Sampling**: a scheduler (DDPM, DDIM, predictor-corrector, annealed Langevin), steps, seed and batch;
  with the class-conditional pipeline also a digit and a classifier-free guidance scale.
- **img2img**: draw or upload a digit, pick a strength; SDEdit completes it.
- **Plug-and-play**: a constraint (a digit through the guide classifier, horizontal symmetry or asymmetry,
  or inpainting a test digit with a mask you draw on it or pick), a method (prior, noise, DPS) and a preset.

Every result shows its images and what the pipeline measured (model calls, constraint values, UNet
passes, seconds); a bad input (0 steps, a blank mask, a strength of 2) shows a readable error in the page
and the server goes on. As a Hugging Face Space, put this file at the Space's root as ``app.py`` with the
front matter of ``examples/space_README.md`` and ``pnp-diffusers`` in its requirements.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from PIL import Image

from pnp_diffusers import (
    AnnealedLangevinScheduler,
    ClassifierConstraint,
    DiffusionSamplingPipeline,
    DPSPipeline,
    MaskedObservation,
    PlugAndPlayPipeline,
    PredictorCorrectorScheduler,
    SymmetryConstraint,
)
from pnp_diffusers.classifiers import load_classifier
from pnp_diffusers.data import load_image_dataset
from pnp_diffusers.utils import image_grid

REPO = Path(__file__).resolve().parents[1]
SCHEDULERS = {
    "DDIM": DDIMScheduler,
    "DDPM": DDPMScheduler,
    "predictor-corrector": PredictorCorrectorScheduler,
    "annealed Langevin": AnnealedLangevinScheduler,
}
MODELS = ("unconditional", "class-conditional (CFG)")
CONSTRAINTS = ("digit (guide classifier)", "horizontal symmetry", "horizontal asymmetry", "inpainting")
METHODS = ("prior", "noise", "dps")
PRESETS = ("auto", "fast", "fast-pixel", "paper", "noise")
MASKS = ("drawn on the digit", "bottom half hidden", "top half hidden", "left half hidden", "centre box hidden",
         "random 50% hidden")
DISPLAY_SCALE = 4  # each 28 px digit is shown 4x, nearest-neighbour


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unconditional", default=str(REPO / "pipelines" / "ddpm-mnist"))
    parser.add_argument("--conditional", default=str(REPO / "pipelines" / "ddpm-mnist-cfg"))
    parser.add_argument("--guide", default=str(REPO / "pipelines" / "mnist-classifier-guide"))
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "mnist"),
                        help="Where the inpainting tab takes its test digits from.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--no_fast", action="store_true", help="float32 UNet forwards (default: the fast path, bf16 where the CPU runs it natively).")
    parser.add_argument("--dps_steps", type=int, default=100, help="Reverse steps of the DPS method.")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------- the models


class Demo:
    """The pipelines, loaded once, and one function per tab (plain Python: testable without a browser)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        fast = not args.no_fast and not torch.cuda.is_available()
        self.uncond = DiffusionSamplingPipeline.from_pretrained(args.unconditional)
        self.cond = DiffusionSamplingPipeline.from_pretrained(args.conditional)
        for pipe in (self.uncond, self.cond):
            if fast:
                pipe.enable_fast_cpu_inference()
        self.noise_config = self.uncond.scheduler.config
        self.pnp = PlugAndPlayPipeline(unet=self.uncond.unet, scheduler=DDPMScheduler.from_config(self.noise_config))
        self.dps = DPSPipeline(unet=self.uncond.unet, scheduler=DDPMScheduler.from_config(self.noise_config))
        self.guide = load_classifier(args.guide, "--guide")
        self.size = int(self.uncond.unet.config.sample_size)
        self.test = load_image_dataset(args.dataset, "test", resolution=self.size, show_progress=False)

    # ------------------------------------------------------------------------------------- sampling
    def sample(self, model: str, scheduler: str, steps, seed, batch, digit: str, guidance_scale):
        steps, seed, batch = as_int(steps, "steps"), as_int(seed, "seed"), as_int(batch, "batch size")
        if not 1 <= batch <= 64:
            raise ValueError(f"`batch size` must be between 1 and 64, got {batch}.")
        pipe = self.cond if model == MODELS[1] else self.uncond
        pipe.scheduler = SCHEDULERS[scheduler].from_config(self.noise_config)
        kwargs = {}
        if pipe is self.cond:
            kwargs = dict(class_labels=int(digit), guidance_scale=float(guidance_scale))
        start = time.perf_counter()
        images = pipe(batch_size=batch, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                      output_type="pt", **kwargs).images
        seconds = time.perf_counter() - start
        calls = len(pipe.scheduler.timesteps) * (2 if kwargs and guidance_scale not in (0, 1) else 1)
        what = f"digit {digit}, guidance scale {float(guidance_scale):g}" if kwargs else "unconditional"
        return to_display(images), (f"**{batch} samples**, {scheduler} with {steps} steps ({what}): "
                                    f"{calls} UNet forwards per image, {seconds:.1f} s.")

    # -------------------------------------------------------------------------------------- img2img
    def img2img(self, drawing, strength, scheduler: str, steps, seed, batch):
        steps, seed, batch = as_int(steps, "steps"), as_int(seed, "seed"), as_int(batch, "batch size")
        image = editor_image(drawing, self.size)
        if image is None or image.max() <= 0:
            raise ValueError("`image` is blank: pick the brush and draw a digit, or upload one first.")
        self.uncond.scheduler = SCHEDULERS[scheduler].from_config(self.noise_config)
        start = time.perf_counter()
        images = self.uncond(image=image, strength=float(strength), batch_size=batch, num_inference_steps=steps,
                             generator=torch.Generator().manual_seed(seed), output_type="pt").images
        seconds = time.perf_counter() - start
        return to_display(images), (f"**{batch} completions** at strength {float(strength):g} ({scheduler}, "
                                    f"{steps} steps): {seconds:.1f} s.")

    # -------------------------------------------------------------------------------- plug-and-play
    def test_digit(self, index) -> Image.Image:
        index = as_int(index, "test digit")
        if not 0 <= index < len(self.test):
            raise ValueError(f"`test digit` must be in [0, {len(self.test) - 1}], got {index}.")
        return Image.fromarray(self.test.images[index, 0].numpy(), mode="L").convert("RGB")

    def plug_and_play(self, constraint_name: str, digit: str, method: str, preset: str, mask_name: str,
                      drawing, test_index, seed, batch):
        seed, batch = as_int(seed, "seed"), as_int(batch, "batch size")
        if not 1 <= batch <= 16:
            raise ValueError(f"`batch size` must be between 1 and 16 for plug-and-play, got {batch}.")
        observed = None
        if constraint_name == CONSTRAINTS[0]:
            constraint = ClassifierConstraint(self.guide, int(digit))
        elif constraint_name in CONSTRAINTS[1:3]:
            constraint = SymmetryConstraint("horizontal", "similar" if constraint_name == CONSTRAINTS[1] else "dissimilar")
        else:
            truth = self.test.images[as_int(test_index, "test digit")].float()[None] / 127.5 - 1
            mask = self.inpainting_mask(mask_name, drawing, seed)
            constraint = MaskedObservation(truth, mask)
            observed = (truth * mask + (1 - mask) * 0.0)  # hidden pixels shown mid-grey
        generator = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        if method == "dps":
            out = self.dps(constraint, batch_size=batch, num_inference_steps=self.args.dps_steps, guidance_scale=1.0,
                           generator=generator, output_type="pt")
        else:
            chosen = choose_preset(preset, method, constraint_name)
            out = self.pnp(constraint, batch_size=batch, method=method, preset=chosen, generator=generator,
                           output_type="pt")
        seconds = time.perf_counter() - start
        images = out.images
        if observed is not None:
            images = torch.cat([(observed + 1) / 2, images.cpu()])
        values = out.constraint_value.float()
        text = (f"**{batch} samples**, method `{method}`" + ("" if method == "dps" else f", preset `{chosen}`")
                + f": constraint value {values.mean():.3f} (min {values.min():.3f}, max {values.max():.3f}); "
                f"{out.unet_forward_passes} UNet forward and {out.unet_backward_passes} backward passes per sample; "
                f"{seconds:.1f} s." + (" The first image is the observation (hidden pixels grey)." if observed is not None else ""))
        return to_display(images), text

    def inpainting_mask(self, mask_name: str, drawing, seed: int) -> torch.Tensor:
        """(1, H, W) float mask: 1 observed, 0 hidden."""
        size = self.size
        mask = torch.ones(1, size, size)
        if mask_name == MASKS[0]:
            strokes = editor_strokes(drawing, size)
            if strokes is None or strokes.sum() == 0:
                raise ValueError("The mask is blank: paint the pixels to hide on the test digit, or pick a mask shape.")
            return 1 - strokes[None]
        if mask_name == MASKS[1]:
            mask[:, size // 2:] = 0
        elif mask_name == MASKS[2]:
            mask[:, : size // 2] = 0
        elif mask_name == MASKS[3]:
            mask[:, :, : size // 2] = 0
        elif mask_name == MASKS[4]:
            mask[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 0
        else:
            mask = (torch.rand(1, size, size, generator=torch.Generator().manual_seed(seed)) > 0.5).float()
        return mask


# ----------------------------------------------------------------------------------------- helpers


def as_int(value, name: str) -> int:
    if value is None or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"`{name}` must be a whole number, got {value!r}.")
    return int(value)


def choose_preset(preset: str, method: str, constraint_name: str) -> str:
    if preset != "auto":
        return preset
    if method == "noise":
        return "noise"
    return "fast" if constraint_name == CONSTRAINTS[0] else "fast-pixel"


def to_display(images: torch.Tensor) -> Image.Image:
    """(B, C, H, W) in [0, 1] -> one grid image, each digit shown DISPLAY_SCALE times larger."""
    grid = image_grid(images.detach().float().clamp(0, 1).cpu(), padding=1)
    array = (grid[0] * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array, mode="L")
    return image.resize((image.width * DISPLAY_SCALE, image.height * DISPLAY_SCALE), Image.NEAREST)


def _editor_layers(drawing):
    if drawing is None:
        return None, []
    if isinstance(drawing, dict):
        return drawing.get("background"), [layer for layer in (drawing.get("layers") or []) if layer is not None]
    return drawing, []


def editor_image(drawing, size: int) -> torch.Tensor | None:
    """What the user drew or uploaded, as a (1, size, size) grey image in [0, 1], white digit on black.

    Strokes count by their opacity, whatever the brush colour; an uploaded picture with a light background
    (mean above one half) is inverted to MNIST's white on black.
    """
    background, _ = _editor_layers(drawing)
    strokes = editor_strokes(drawing, size, soft=True)
    grey = None
    if background is not None:
        image = Image.fromarray(np.asarray(background)) if not isinstance(background, Image.Image) else background
        rgba = np.asarray(image.convert("RGBA").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        grey = rgba[..., :3].mean(-1) * rgba[..., 3]
        if rgba[..., 3].mean() > 0.5 and grey.mean() > 0.5:
            grey = 1.0 - grey
    if strokes is not None:
        grey = strokes.numpy() if grey is None else np.maximum(grey, strokes.numpy())
    return None if grey is None else torch.from_numpy(grey.astype(np.float32))[None]


def editor_strokes(drawing, size: int, soft: bool = False) -> torch.Tensor | None:
    """The painted pixels of the editor's layers, as a (size, size) 0/1 mask (``soft``: their opacity in [0, 1])."""
    _, layers = _editor_layers(drawing)
    if not layers:
        return None
    alpha = np.zeros((size, size), dtype=np.float32)
    for layer in layers:
        image = Image.fromarray(np.asarray(layer)) if not isinstance(layer, Image.Image) else layer
        channel = np.asarray(image.convert("RGBA").resize((size, size), Image.BILINEAR if soft else Image.NEAREST))[..., 3]
        alpha = np.maximum(alpha, channel / 255.0)
    return torch.from_numpy(alpha if soft else (alpha > 0.5).astype(np.float32))


def readable_errors(fn):
    """Show a bad input as an error message in the page, never a traceback; the server goes on."""
    import gradio as gr

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, KeyError) as error:
            raise gr.Error(str(error).replace("`", "")) from None
    return wrapper


# ---------------------------------------------------------------------------------------------- page


def result_column(prefix: str, label: str):
    """A tab's output column: the image grid (``#<prefix>_image``) and the measured numbers (``#<prefix>_text``)."""
    import gradio as gr

    with gr.Column():
        image = gr.Image(type="pil", label=label, elem_id=f"{prefix}_image", format="png")
        text = gr.Markdown(elem_id=f"{prefix}_text")
    return image, text


def build_demo(demo: Demo):
    import gradio as gr

    digits = [str(d) for d in range(10)]
    with gr.Blocks(title="pnp-diffusers: MNIST DDPM samplers and plug-and-play priors") as page:
        gr.Markdown("# pnp-diffusers on MNIST\nDDPM samplers as diffusers schedulers, and the DDPM as a "
                    "plug-and-play prior (Graikos et al. 2022). Everything runs on this machine's CPU.")
        with gr.Tab("Sampling"):
            with gr.Row():
                with gr.Column():
                    model = gr.Radio(list(MODELS), value=MODELS[1], label="pipeline", elem_id="sample_model")
                    scheduler = gr.Dropdown(list(SCHEDULERS), value="DDIM", label="scheduler")
                    steps = gr.Number(value=50, precision=0, label="steps (noise levels)", elem_id="sample_steps")
                    digit = gr.Radio(digits, value="3", label="digit (class-conditional pipeline)", elem_id="sample_digit")
                    guidance = gr.Slider(0, 8, value=1.5, step=0.5, label="guidance scale (class-conditional pipeline)")
                    seed = gr.Number(value=0, precision=0, label="seed")
                    batch = gr.Slider(1, 64, value=16, step=1, label="batch")
                    go = gr.Button("Generate", variant="primary", elem_id="sample_button")
                out_image, out_text = result_column("sample", "samples")
            go.click(readable_errors(demo.sample), [model, scheduler, steps, seed, batch, digit, guidance],
                     [out_image, out_text])
        with gr.Tab("img2img"):
            with gr.Row():
                with gr.Column():
                    sketch = gr.Sketchpad(label="draw a digit (pick the brush) or upload one", elem_id="img2img_input",
                                          canvas_size=(280, 280), type="numpy")
                    strength = gr.Number(value=0.5, label="strength (0 keeps the drawing, 1 ignores it)",
                                         elem_id="img2img_strength")
                    scheduler2 = gr.Dropdown(list(SCHEDULERS), value="DDIM", label="scheduler")
                    steps2 = gr.Number(value=50, precision=0, label="steps")
                    seed2 = gr.Number(value=0, precision=0, label="seed")
                    batch2 = gr.Slider(1, 16, value=8, step=1, label="completions")
                    go2 = gr.Button("Complete", variant="primary", elem_id="img2img_button")
                out_image2, out_text2 = result_column("img2img", "completions")
            go2.click(readable_errors(demo.img2img), [sketch, strength, scheduler2, steps2, seed2, batch2],
                      [out_image2, out_text2])
        with gr.Tab("Plug-and-play"):
            with gr.Row():
                with gr.Column():
                    constraint = gr.Radio(list(CONSTRAINTS), value=CONSTRAINTS[0], label="constraint", elem_id="pnp_constraint")
                    digit3 = gr.Radio(digits, value="3", label="digit (guide classifier)")
                    method = gr.Radio(list(METHODS), value="prior", label="method")
                    preset = gr.Dropdown(list(PRESETS), value="auto", label="preset (method prior or noise)")
                    mask = gr.Radio(list(MASKS), value=MASKS[1], label="inpainting mask", elem_id="pnp_mask")
                    test_index = gr.Number(value=0, precision=0, label="test digit (inpainting)")
                    editor = gr.ImageEditor(value=demo.test_digit(0), type="numpy", label="paint the pixels to hide "
                                            "(mask 'drawn on the digit')", elem_id="pnp_editor")
                    seed3 = gr.Number(value=0, precision=0, label="seed")
                    batch3 = gr.Slider(1, 16, value=2, step=1, label="batch (each sample costs 400 UNet passes)")
                    go3 = gr.Button("Run plug-and-play", variant="primary", elem_id="pnp_button")
                out_image3, out_text3 = result_column("pnp", "samples")
            test_index.change(readable_errors(demo.test_digit), [test_index], [editor])
            go3.click(readable_errors(demo.plug_and_play),
                      [constraint, digit3, method, preset, mask, editor, test_index, seed3, batch3],
                      [out_image3, out_text3])
    return page


def main(argv=None) -> None:
    args = parse_args(argv)
    demo = Demo(args)
    page = build_demo(demo)
    page.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()
