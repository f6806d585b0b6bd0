"""Exports: the code-free bundle reproduces the model's doses without the training code."""

import json
import subprocess
import sys
from pathlib import Path

import d3rlpy
import numpy as np
import pytest
from d3rlpy.logging import NoopAdapterFactory
from vanco_pk.targets import DOSE_GRID_MG

import vanco_offline.bundle as bundle_module
from vanco_offline.bundle import load_bundle
from vanco_offline.configs import build_algo, load_preset
from vanco_offline.data import convert, load_table
from vanco_offline.export import export_policy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["default", "discrete"])
def trained(request):
    preset = load_preset(request.param)
    result = convert(
        load_table(ROOT / "data" / "sample_cohort.csv"), preset.data.action, fill_unmeasured_level=True
    )
    d3rlpy.seed(0)
    algo = build_algo(preset, result.dataset)
    algo.fit(
        result.dataset,
        n_steps=100,
        n_steps_per_epoch=100,
        show_progress=False,
        logger_adapter=NoopAdapterFactory(),
        save_interval=10**9,
    )
    return algo, result


def _model_doses(algo, observations):
    action = algo.predict(observations)
    return DOSE_GRID_MG[action.astype(int)] if action.ndim == 1 else action[:, 0]


def test_bundle_reproduces_the_model(trained, tmp_path):
    algo, result = trained
    path = export_policy(
        algo, tmp_path / "policy.safetensors", "bundle", observation_names=list(result.observation_names)
    )
    observations = np.concatenate([ep.observations for ep in result.dataset.episodes[:20]])
    np.testing.assert_allclose(
        load_bundle(path).predict(observations), _model_doses(algo, observations), atol=0.05
    )


def test_bundle_runs_without_torch_or_d3rlpy(trained, tmp_path):
    algo, result = trained
    path = export_policy(
        algo, tmp_path / "policy.safetensors", "bundle", observation_names=list(result.observation_names)
    )
    row = result.dataset.episodes[3].observations[2]
    state = tmp_path / "state.json"
    state.write_text(json.dumps(dict(zip(result.observation_names, map(float, row), strict=True))))
    script = (
        "import runpy, sys\n"
        "class Uninstalled:  # as if torch and d3rlpy were not installed\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'd3rlpy'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Uninstalled())\n"
        f"sys.argv = ['bundle', {str(path)!r}, {str(state)!r}]\n"
        "runpy.run_module('vanco_offline.bundle', run_name='__main__')\n"
        "assert 'torch' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    # A bare policy export carries no dosing interval or population: the runtime loads it (the
    # module imports without torch) but gives no patient a dose from it, and says why.
    # tests/test_adversarial_bundle.py doses a whole model's bundle without torch.
    assert out.returncode == 2 and "no dosing interval" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_onnx_export_matches(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    algo, result = trained
    path = export_policy(algo, tmp_path / "policy.onnx", "onnx")
    observations = result.dataset.episodes[0].observations.astype(np.float32)
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: observations})[0]
    np.testing.assert_allclose(
        np.asarray(got).reshape(len(observations), -1)[:, 0],
        np.asarray(algo.predict(observations)).reshape(len(observations), -1)[:, 0],
        atol=1e-4,
    )


def test_onnx_export_of_a_plain_d3rlpy_algorithm(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    result = convert(
        load_table(ROOT / "data" / "sample_cohort.csv"), "continuous", fill_unmeasured_level=True
    )
    d3rlpy.seed(0)
    bc = d3rlpy.algos.BCConfig().create()
    bc.build_with_dataset(result.dataset)
    path = export_policy(bc, tmp_path / "bc.onnx", "onnx")
    observations = result.dataset.episodes[0].observations.astype(np.float32)
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: observations})[0]
    np.testing.assert_allclose(np.asarray(got).reshape(-1), bc.predict(observations).reshape(-1), atol=1e-5)


def test_foreign_files_are_refused(tmp_path):
    from safetensors.numpy import save_file

    text = tmp_path / "notes.safetensors"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="not a vanco-offline bundle"):
        load_bundle(text)
    bare = tmp_path / "bare.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(bare))
    with pytest.raises(ValueError, match="no 'vanco_offline' metadata"):
        load_bundle(bare)
    with pytest.raises(FileNotFoundError):
        load_bundle(tmp_path / "missing.safetensors")


def test_export_checks_format_and_algorithm(trained, tmp_path):
    algo, _ = trained
    with pytest.raises(ValueError, match="unknown export format"):
        export_policy(algo, tmp_path / "p.bin", "pickle")
    with pytest.raises(ValueError, match=r"\.safetensors file"):
        export_policy(algo, tmp_path / "p.onnx", "bundle", observation_names=[])
    iql = d3rlpy.algos.IQLConfig().create()
    with pytest.raises(ValueError, match="use --format onnx or torchscript"):
        export_policy(iql, tmp_path / "p.safetensors", "bundle", observation_names=[])


def test_bundle_predict_validates_input(trained, tmp_path):
    algo, result = trained
    path = export_policy(
        algo, tmp_path / "policy.safetensors", "bundle", observation_names=list(result.observation_names)
    )
    loaded = load_bundle(path)
    with pytest.raises(ValueError, match="shape"):
        loaded.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        loaded.predict(np.full((1, len(result.observation_names)), np.nan))


def test_bundle_decision_rule_matches_the_algorithm():
    import torch

    from vanco_offline.algos.torch.discrete_vanco_iql_impl import mean_level

    logits = np.random.default_rng(3).normal(scale=2.0, size=(500, len(DOSE_GRID_MG)))
    expected = mean_level(torch.from_numpy(logits)).numpy()
    np.testing.assert_array_equal(bundle_module._choose_level(logits, "mean"), expected)
