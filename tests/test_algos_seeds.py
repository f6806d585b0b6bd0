"""fit_seeds trains K seeds as one batched model; each seed equals its own separate fit."""

from __future__ import annotations

import d3rlpy
import numpy as np
import pytest
import torch
from d3rlpy.models import VectorEncoderFactory
from test_algos_fit_contract import _QUIET, _config, _dataset, _discrete_config, _discrete_dataset

from vanco_offline.algos import fit_seeds

STEPS = 12


def _separate(config, dataset, seed, n_steps=STEPS):
    d3rlpy.seed(seed)
    algo = config.create()
    algo.fit(dataset, n_steps=n_steps, n_steps_per_epoch=n_steps, **_QUIET)
    return algo


def _weights(algo) -> torch.Tensor:
    m = algo.impl.modules
    return torch.cat(
        [
            p.detach().flatten()
            for name in ("policy", "q_funcs", "targ_q_funcs", "value_func")
            for p in getattr(m, name).parameters()
        ]
    )


@pytest.mark.parametrize(
    ("make_config", "make_dataset"), [(_config, _dataset), (_discrete_config, _discrete_dataset)]
)
def test_each_vectorised_seed_equals_its_separate_fit(make_config, make_dataset, tmp_path):
    config, dataset = make_config(), make_dataset()
    seeds = [0, 5, 9]
    algos = fit_seeds(config, dataset, seeds, STEPS, vectorise=True)
    assert [type(a) for a in algos] == [type(config.create())] * 3
    for seed, algo in zip(seeds, algos, strict=True):
        reference = _separate(config, dataset, seed)
        torch.testing.assert_close(_weights(algo), _weights(reference), rtol=1e-5, atol=1e-6)
        assert algo.grad_step == STEPS
    # The seeds differ from one another, and a fitted seed saves and loads like any algorithm.
    assert not torch.allclose(_weights(algos[0]), _weights(algos[1]))
    obs = dataset.episodes[0].observations[:4]
    algos[1].save(tmp_path / "seed.d3")
    loaded = d3rlpy.load_learnable(tmp_path / "seed.d3")
    np.testing.assert_array_equal(loaded.predict(obs), algos[1].predict(obs))


def test_a_vectorised_seed_resumes_training_like_its_separate_fit():
    # Each seed's own Adam gets its slice of the stacked optimizer state.
    config, dataset = _config(), _dataset()
    (algo,) = fit_seeds(config, dataset, [3], STEPS, vectorise=True)
    reference = _separate(config, dataset, 3)
    for a in (algo, reference):
        d3rlpy.seed(100)
        a.fit(dataset, n_steps=5, n_steps_per_epoch=5, **_QUIET)
    torch.testing.assert_close(_weights(algo), _weights(reference), rtol=1e-5, atol=1e-6)


def test_other_algorithms_fit_seed_after_seed():
    dataset = _dataset()
    enc = VectorEncoderFactory([8, 8])
    bc = d3rlpy.algos.BCConfig(encoder_factory=enc, batch_size=16)
    algos = fit_seeds(bc, dataset, [1, 2], 4)
    reference = _separate(bc, dataset, 2, n_steps=4)
    obs = dataset.episodes[0].observations[:3]
    np.testing.assert_array_equal(algos[1].predict(obs), reference.predict(obs))
    with pytest.raises(ValueError, match="cannot vectorise: BCConfig is not a VancoIQL config"):
        fit_seeds(bc, dataset, [1], 4, vectorise=True)
    dropout = _config(actor_encoder_factory=VectorEncoderFactory([8], dropout_rate=0.1))
    with pytest.raises(ValueError, match="cannot vectorise: no batched form of Dropout"):
        fit_seeds(dropout, dataset, [1], 4, vectorise=True)
    with pytest.raises(ValueError, match="at least one seed"):
        fit_seeds(_config(), dataset, [], 4)
