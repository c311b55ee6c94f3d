"""Saved pipelines: what is written, the three ways to load them, push_to_hub, model cards.

All offline: pushing is checked by replacing only the two network calls (create_repo, upload_folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, DiffusionPipeline, UNet2DModel
from huggingface_hub import ModelCard

import pnp_diffusers.hub as hub
from pnp_diffusers import DiffusionSamplingPipeline, PredictorCorrectorScheduler, write_model_card
from pnp_diffusers.hub import remote_code_shim, write_remote_code_shim

T = 20


def make_pipe(unet, scheduler=None):
    pipe = DiffusionSamplingPipeline(unet=unet, scheduler=scheduler or DDPMScheduler(num_train_timesteps=T))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images


def folder_snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def saved(tiny_unet, tmp_path):
    pipe = make_pipe(tiny_unet)
    pipe.save_pretrained(tmp_path / "pipe")
    return pipe, tmp_path / "pipe"


def test_saved_folder_is_stock_components_plus_shim_and_card(saved):
    _, path = saved
    assert {p.name for p in path.iterdir()} == {"model_index.json", "pipeline.py", "README.md", "unet", "scheduler"}
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "DiffusionSamplingPipeline"]
    assert index["unet"] == ["diffusers", "UNet2DModel"] and index["scheduler"] == ["diffusers", "DDPMScheduler"]
    shim = (path / "pipeline.py").read_text()
    assert "from pnp_diffusers import DiffusionSamplingPipeline" in shim
    namespace: dict = {}
    exec(compile(shim, "pipeline.py", "exec"), namespace)  # the shim only re-exports the installed class
    assert namespace["DiffusionSamplingPipeline"] is DiffusionSamplingPipeline
    assert json.loads((path / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "DDPMScheduler"
    card = ModelCard.load(path / "README.md")
    assert card.data.library_name == "diffusers" and "pnp-diffusers" in card.data.tags


def test_loads_with_our_class_directly(saved):
    pipe, path = saved
    loaded = DiffusionSamplingPipeline.from_pretrained(path)
    assert type(loaded) is DiffusionSamplingPipeline and isinstance(loaded.unet, UNet2DModel)
    assert torch.equal(sample(loaded), sample(pipe))


def test_loads_with_diffusers_remote_code(saved):
    pipe, path = saved
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(path)
    loaded = DiffusionPipeline.from_pretrained(path, trust_remote_code=True)
    assert type(loaded) is DiffusionSamplingPipeline
    assert torch.equal(sample(loaded), sample(pipe))


def test_plain_diffusers_loads_the_stock_components(saved):
    """Without pnp-diffusers: unet/ and scheduler/ make a DDPMPipeline with the very same images."""
    pipe, path = saved
    plain = DDPMPipeline(
        unet=UNet2DModel.from_pretrained(path, subfolder="unet"),
        scheduler=DDPMScheduler.from_pretrained(path, subfolder="scheduler"),
    )
    plain.set_progress_bar_config(disable=True)
    images = plain(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=T, output_type="pt").images
    assert torch.equal(images, sample(pipe))


def test_diffusers_042_cannot_load_a_shim_folder_as_ddpm_pipeline_without_remote_code(saved):
    """diffusers 0.42 routes every loader through the folder's pipeline.py once model_index.json names it."""
    _, path = saved
    with pytest.raises(ValueError, match="trust_remote_code"):
        DDPMPipeline.from_pretrained(path)


def test_folder_without_shim_loads_as_ddpm_pipeline(tiny_unet, tmp_path):
    pipe = make_pipe(tiny_unet)
    pipe.save_pretrained(tmp_path)
    pipe.save_pretrained(tmp_path, remote_code=False, model_card=dict(title="no shim"))
    assert not (tmp_path / "pipeline.py").exists()  # the earlier shim is removed
    card = (tmp_path / "README.md").read_text()
    assert 'DDPMPipeline.from_pretrained("PATH_OR_REPO_ID")' in card and "trust_remote_code" not in card
    assert json.loads((tmp_path / "model_index.json").read_text())["_class_name"] == "DiffusionSamplingPipeline"
    plain = DDPMPipeline.from_pretrained(tmp_path)
    assert type(plain) is DDPMPipeline
    plain.set_progress_bar_config(disable=True)
    images = plain(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=T, output_type="pt").images
    assert torch.equal(images, sample(pipe))
    assert torch.equal(sample(DiffusionSamplingPipeline.from_pretrained(tmp_path)), sample(pipe))


def test_our_scheduler_is_saved_as_the_stock_ddpm_noise_schedule(tiny_unet, tmp_path):
    pipe = make_pipe(tiny_unet, DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2"))
    pipe.scheduler = PredictorCorrectorScheduler.from_config(pipe.scheduler.config, n_corrector_steps=2)
    pipe.save_pretrained(tmp_path)
    assert isinstance(pipe.scheduler, PredictorCorrectorScheduler)  # the live pipeline keeps its sampler
    assert pipe.config.scheduler[1] == "PredictorCorrectorScheduler"
    loaded = DiffusionSamplingPipeline.from_pretrained(tmp_path)
    assert type(loaded.scheduler) is DDPMScheduler
    torch.testing.assert_close(loaded.scheduler.alphas_cumprod, pipe.scheduler.alphas_cumprod)
    loaded.scheduler = PredictorCorrectorScheduler.from_config(loaded.scheduler.config, n_corrector_steps=2)
    assert torch.equal(sample(loaded, num_inference_steps=4), sample(pipe, num_inference_steps=4))


def test_stock_ddim_scheduler_is_saved_as_it_is(tiny_unet, tmp_path):
    pipe = make_pipe(tiny_unet, DDIMScheduler(num_train_timesteps=T))
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionSamplingPipeline.from_pretrained(tmp_path)
    assert type(loaded.scheduler) is DDIMScheduler
    assert torch.equal(sample(loaded, num_inference_steps=5), sample(pipe, num_inference_steps=5))


def test_conditional_pipeline_round_trip_with_guidance(tiny_conditional_unet, tmp_path):
    pipe = make_pipe(tiny_conditional_unet)
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    kwargs = dict(class_labels=[0, 2], guidance_scale=2.5, num_inference_steps=5)
    assert torch.equal(sample(loaded, **kwargs), sample(pipe, **kwargs))
    assert "class-conditional" in ModelCard.load(tmp_path / "README.md").data.tags


# -------------------------------------------------------------------------------------- pushing


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace only the network calls; record what would be uploaded."""
    uploads = []

    class Repo:
        def __init__(self, repo_id):
            self.repo_id = repo_id

    def create_repo(repo_id, private=None, token=None, exist_ok=False):
        assert exist_ok
        return Repo(repo_id)

    def upload_folder(repo_id, folder_path, token=None, commit_message=None, create_pr=False):
        uploads.append({"repo_id": repo_id, "files": folder_snapshot(Path(folder_path)), "message": commit_message})
        return "commit-info"

    monkeypatch.setattr(hub, "create_repo", create_repo)
    monkeypatch.setattr(hub, "upload_folder", upload_folder)
    return uploads


def test_push_to_hub_uploads_exactly_the_saved_folder(saved, fake_hub):
    pipe, path = saved
    assert pipe.push_to_hub("user/tiny") == "commit-info"
    assert fake_hub[0]["repo_id"] == "user/tiny"
    assert fake_hub[0]["files"] == folder_snapshot(path)


def test_push_to_hub_with_a_model_card(tiny_unet, tmp_path, fake_hub):
    pipe = make_pipe(tiny_unet)
    card = dict(title="tiny", description="A test.", metrics={"FD": 1.5}, datasets=["mnist"])
    pipe.push_to_hub("user/tiny", model_card=card, commit_message="first")
    pipe.save_pretrained(tmp_path, model_card=card)
    assert fake_hub[0]["files"] == folder_snapshot(tmp_path) and fake_hub[0]["message"] == "first"
    assert b"| FD | 1.5 |" in fake_hub[0]["files"]["README.md"]


def test_save_pretrained_push_to_hub_pushes_that_folder(tiny_unet, tmp_path, fake_hub):
    pipe = make_pipe(tiny_unet)
    pipe.save_pretrained(tmp_path / "my-ddpm", push_to_hub=True, private=True)
    assert fake_hub[0]["repo_id"] == "my-ddpm"
    assert fake_hub[0]["files"] == folder_snapshot(tmp_path / "my-ddpm")
    with pytest.raises(ValueError, match="Unexpected keyword"):
        pipe.save_pretrained(tmp_path / "other", repo="x")


def test_push_folder_to_hub_checks_the_folder(tmp_path, fake_hub):
    with pytest.raises(ValueError, match="folder"):
        hub.push_folder_to_hub(tmp_path, "user/x")


# ----------------------------------------------------------------------------------- model cards


def test_model_card_metadata_and_sections(saved):
    _, path = saved
    write_model_card(
        path,
        title="mnist-ddpm",
        description="Trained 10 k steps.",
        metrics={"classifier FD (n=1000)": 12.3, "real-data floor": 1.1},
        commands={"train": "accelerate launch train/train.py --dataset mnist"},
        datasets=["mnist"],
        tags=["mnist"],
    )
    card = ModelCard.load(path / "README.md")
    assert card.data.library_name == "diffusers" and card.data.datasets == ["mnist"]
    assert card.data.pipeline_tag == "unconditional-image-generation"
    assert card.data.tags == ["pytorch", "diffusers", "pnp-diffusers", "mnist"]
    assert "# mnist-ddpm" in card.text and "| classifier FD (n=1000) | 12.3 |" in card.text
    assert "accelerate launch train/train.py --dataset mnist" in card.text
    # the class comes from model_index.json: the card shows how to load this folder
    assert "DiffusionSamplingPipeline.from_pretrained" in card.text and "trust_remote_code=True" in card.text


def test_existing_card_is_kept_by_save_pretrained(saved):
    pipe, path = saved
    write_model_card(path, title="kept")
    pipe.save_pretrained(path)
    assert "# kept" in (path / "README.md").read_text()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(title=""), "title"),
        (dict(title="x", metrics=[1]), "metrics"),
        (dict(title="x", commands="train"), "commands"),
        (dict(title="x", tags="mnist"), "tags"),
        (dict(title="x", datasets=[1]), "datasets"),
    ],
)
def test_model_card_bad_inputs_raise(tmp_path, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        write_model_card(tmp_path, **kwargs)


def test_shim_helpers_validate(tmp_path):
    with pytest.raises(ValueError, match="class_name"):
        remote_code_shim("not a name")
    with pytest.raises(ValueError, match="save_directory"):
        write_remote_code_shim(tmp_path, "DiffusionSamplingPipeline")
    with pytest.raises(ValueError, match="model_card"):
        make_pipe(UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                              norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                              up_block_types=("UpBlock2D", "UpBlock2D"))).save_pretrained(tmp_path, model_card="card")
