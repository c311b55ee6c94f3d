"""benchmarks/sweep_pnp.py end to end on tiny pipelines: one row per setting, ratios that match their parts."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "datasets" / "mnist"
sys.path.insert(0, str(REPO / "tests"))

from test_quickstart import tiny_pipelines  # noqa: E402,F401  (the module-scoped fixture)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_sweep_pnp_writes_a_row_per_setting(tiny_pipelines, tmp_path, capsys):  # noqa: F811
    root = tiny_pipelines
    configs = [{"name": "two iterations", "num_iterations": 2, "final_denoise_t": 0},
               {"name": "with a final pass", "num_iterations": 2, "final_denoise_t": 10, "final_denoise_steps": 3}]
    results = load_script("sweep_pnp").main([
        "--prior", str(root / "uncond"), "--guide", str(root / "classifier"), "--judge", str(root / "classifier"),
        "--configs", json.dumps(configs), "--n_per_digit", "1", "--batch_size", "5", "--uncond_steps", "2",
        "--max_reference_samples", "40", "--device", "cpu", "--output_json", str(tmp_path / "sweep.json"),
    ])
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads(json.dumps(results))
    assert [row["name"] for row in results["configs"]] == ["two iterations", "with a final pass"]
    for row in results["configs"]:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["frechet_ratio"] == pytest.approx(row["frechet_distance"] / results["unconditional"]["frechet_distance"])
        assert row["kernel_ratio"] == pytest.approx(row["kernel_distance"] / results["unconditional"]["kernel_distance"])
    # 2 x 2 for the iterations; the fast preset's final pass is guided: 3 steps x (forward + backward).
    assert [row["passes_per_sample"] for row in results["configs"]] == [4, 4 + 2 * 3]
    assert "| with a final pass |" in capsys.readouterr().out


def test_sweep_pnp_rejects_bad_configs():
    sweep = load_script("sweep_pnp")
    with pytest.raises(ValueError, match="--configs"):
        sweep.parse_args(["--configs", "not json"])
    with pytest.raises(ValueError, match="'name'"):
        sweep.parse_args(["--configs", '[{"num_iterations": 2}]'])
