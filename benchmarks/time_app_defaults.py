#!/usr/bin/env python
"""Seconds each tab of examples/app.py takes at its defaults on the shipped pipelines (python benchmarks/time_app_defaults.py)."""
import importlib.util
import time
from pathlib import Path

import numpy as np

# examples/app.py is a script, not a module of the package: load it from its file.
spec = importlib.util.spec_from_file_location("app", Path(__file__).resolve().parents[1] / "examples" / "app.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
d = app.Demo(app.parse_args([]))
d.uncond.set_progress_bar_config(disable=True)
d.cond.set_progress_bar_config(disable=True)
d.pnp.set_progress_bar_config(disable=True)
d.sample(app.MODELS[1], "DDIM", 5, 0, 2, "3", 2.0)  # warm-up
for name, fn in [
    ("sampling defaults (CFG, DDIM 50, batch 16, w=2)", lambda: d.sample(app.MODELS[1], "DDIM", 50, 0, 16, "3", 2.0)),
    ("img2img defaults (strength 0.5, DDIM 50, 8 completions)", lambda: d.img2img({"background": None, "layers": [np.pad(np.full((200, 40, 4), 255, np.uint8), ((40, 40), (120, 120), (0, 0)))], "composite": None}, 0.5, "DDIM", 50, 0, 8)),
    ("plug-and-play defaults (digit 3 via the guide, prior, fast preset, batch 2)", lambda: d.plug_and_play(app.CONSTRAINTS[0], "3", "prior", "auto", app.MASKS[1], None, 0, 0, 2)),
    ("plug-and-play inpainting (bottom half, prior, fast-pixel, batch 2)", lambda: d.plug_and_play(app.CONSTRAINTS[3], "3", "prior", "auto", app.MASKS[1], None, 0, 0, 2)),
]:
    start = time.perf_counter(); _, text = fn(); print(f"{name}: {time.perf_counter() - start:.1f} s  | {text[:90]}")
