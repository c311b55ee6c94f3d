"""The unconditional branch of a CFG UNet as a stock unconditional UNet: the fold and train/extract_unconditional.py."""

import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

from pnp_diffusers import DiffusionSamplingPipeline, create_noise_scheduler, create_unet, unconditional_unet_from_cfg
from pnp_diffusers.training_utils import load_unet_weights_from_pipeline

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "train"))

import extract_unconditional  # noqa: E402

TINY = dict(block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, layers_per_block=1, attention_head_dim=4)


def tiny_cfg_unet(seed=0, **overrides):
    torch.manual_seed(seed)
    unet = create_unet("cifar10-cpu", sample_size=8, num_classes=3, **{**TINY, **overrides}).eval()
    with torch.no_grad():  # a trained-looking embedding: every label, the null class too, moves the output
        unet.class_embedding.weight.normal_(0, 1)
    return unet


def test_the_folded_unet_computes_the_null_class_branch_and_nothing_else():
    cfg = tiny_cfg_unet()
    folded = unconditional_unet_from_cfg(cfg)
    assert folded.config.num_class_embeds is None and folded.class_embedding is None and not folded.training
    assert sum(p.numel() for p in folded.parameters()) == sum(p.numel() for p in cfg.parameters()) - cfg.class_embedding.weight.numel()
    sample, timesteps = torch.randn(4, 3, 8, 8), torch.tensor([0, 250, 600, 999])
    with torch.no_grad():
        null = cfg(sample, timesteps, class_labels=torch.full((4,), 3)).sample
        label0 = cfg(sample, timesteps, class_labels=torch.zeros(4, dtype=torch.long)).sample
        got = folded(sample, timesteps).sample
    torch.testing.assert_close(got, null, rtol=1e-5, atol=1e-5)
    assert (got - label0).abs().max() > 1e-2  # the fold picked the null class, not any label
    assert cfg.class_embedding is not None and cfg.config.num_class_embeds == 4  # the source is untouched


def test_the_fold_refuses_what_it_cannot_fold():
    unconditional = create_unet("cifar10-cpu", sample_size=8, **TINY)
    with pytest.raises(ValueError, match="not class-conditional"):
        unconditional_unet_from_cfg(unconditional)
    timestep_labels = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, num_class_embeds=4, class_embed_type="timestep", **TINY)
    with pytest.raises(ValueError, match="class_embed_type='timestep'"):
        unconditional_unet_from_cfg(timestep_labels)


def test_extract_writes_a_folder_plain_diffusers_samples_like_cfg_at_w0_and_train_py_can_continue(tmp_path):
    scheduler = create_noise_scheduler("squaredcos_cap_v2")
    DiffusionSamplingPipeline(unet=tiny_cfg_unet(), scheduler=scheduler).save_pretrained(tmp_path / "cfg")
    result = extract_unconditional.main(["--pipeline", str(tmp_path / "cfg"), "--output_dir", str(tmp_path / "uncond")])
    assert result["max_abs_error"] < 1e-5
    card = (tmp_path / "uncond" / "README.md").read_text()
    assert "extract_unconditional.py --pipeline" in card and "- classifier-free-guidance" not in card

    # plain diffusers samples the folder, and with the same noise and the same DDIM update (this project's pipeline
    # steps with the clamped x0's epsilon) it draws what the CFG pipeline draws at w=0
    plain = DDIMPipeline.from_pretrained(tmp_path / "uncond")
    cfg = DiffusionSamplingPipeline.from_pretrained(tmp_path / "cfg")
    cfg.scheduler = DDIMScheduler.from_config(cfg.scheduler.config)
    for pipe in (plain, cfg):
        pipe.set_progress_bar_config(disable=True)
    ours = cfg(batch_size=2, class_labels=[0, 1], guidance_scale=0.0, num_inference_steps=4,
               generator=torch.Generator().manual_seed(0), output_type="np").images
    stock = plain(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0), use_clipped_model_output=True,
                  output_type="np").images
    assert abs(ours - stock).max() < 1e-4

    # an unconditional run of the same network starts from exactly these weights
    fresh = UNet2DModel.from_config(UNet2DModel.load_config(tmp_path / "uncond" / "unet"))
    assert load_unet_weights_from_pipeline(fresh, str(tmp_path / "uncond")) is False
    for key, value in UNet2DModel.from_pretrained(tmp_path / "uncond" / "unet").state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_extract_carries_the_source_cards_datasets_and_tags_but_not_its_conditioning(tmp_path):
    from pnp_diffusers.hub import write_model_card

    DiffusionSamplingPipeline(unet=tiny_cfg_unet(), scheduler=create_noise_scheduler("squaredcos_cap_v2")).save_pretrained(tmp_path / "cfg")
    write_model_card(tmp_path / "cfg", title="cfg", datasets=["uoft-cs/cifar10"], tags=["cifar10", "classifier-free-guidance"])
    extract_unconditional.main(["--pipeline", str(tmp_path / "cfg"), "--output_dir", str(tmp_path / "uncond")])
    from huggingface_hub import ModelCard

    data = ModelCard.load(tmp_path / "uncond" / "README.md").data
    assert data.datasets == ["uoft-cs/cifar10"] and "cifar10" in data.tags and "classifier-free-guidance" not in data.tags


def test_extract_names_the_argument_for_an_unconditional_pipeline(tmp_path):
    DiffusionSamplingPipeline(unet=create_unet("cifar10-cpu", sample_size=8, **TINY),
                              scheduler=create_noise_scheduler("squaredcos_cap_v2")).save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="`--pipeline`.*not class-conditional"):
        extract_unconditional.main(["--pipeline", str(tmp_path / "plain"), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
