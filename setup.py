from setuptools import find_packages, setup

# torch is pinned in requirements.txt (the CPU build on this workplace's machines); here it is a
# range so that users with a CUDA build keep theirs.
setup(
    name="pnp-diffusers",
    version="0.1.0",
    description="DDPM samplers as diffusers schedulers, and diffusion models as plug-and-play priors (Graikos et al. 2022).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pnp_diffusers", "pnp_diffusers.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "diffusers>=0.42,<0.43",
        "transformers>=5.0",
        "accelerate>=1.0",
        "datasets>=3.0",
        "safetensors>=0.4",
        "torchmetrics>=1.4",
        "pillow",
        "numpy",
        "tqdm",
    ],
    extras_require={
        "test": ["pytest", "matplotlib", "selenium"],
        "bench": ["matplotlib"],
        "demo": ["gradio>=5", "matplotlib"],
        "tensorboard": ["tensorboard"],
        # Standard Inception FID/KID (benchmarks/eval_quality.py --features inception); the weights download on first use.
        "inception": ["torch-fidelity"],
    },
    license="Apache-2.0",
)
