"""The calibration panel of ``bench ope``: policies of clearly different quality.

Reference policies of ``vanco_pk`` at several noise levels (the logged clinician, a careful
and a sloppy one, MIPD, the oracle, a fixed dose, random), MIPD perturbed (softened by 0.3),
and d3rlpy algorithms trained on a second cohort of the same world: DiscreteVancoIQL at the
full budget and at a fifth of it, its own stochastic policy, DiscreteCQL, DQN, DiscreteBC.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vanco_bench.ope.options import Size

__all__ = ["panel", "train"]


def train(
    size: Size, result: Any, gamma: float, seed: int, names: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """DiscreteVancoIQL (at the full budget and at a fifth of it), DiscreteCQL, DQN and DiscreteBC
    trained on the clinician's data (``names``: only those; DiscreteVancoIQL is always trained)."""
    import d3rlpy
    from d3rlpy.algos import DiscreteBCConfig, DiscreteCQLConfig, DQNConfig
    from d3rlpy.logging import NoopAdapterFactory
    from d3rlpy.models.encoders import VectorEncoderFactory

    from vanco_offline.algos import DiscreteVancoIQLConfig
    from vanco_offline.data import fit_scalers
    from vanco_offline.ope.threads import single_thread

    scaler = fit_scalers(result).observation_scaler
    encoder = VectorEncoderFactory(hidden_units=[64, 64])
    configs = {
        "DiscreteVancoIQL": DiscreteVancoIQLConfig(
            actor_encoder_factory=encoder,
            critic_encoder_factory=encoder,
            value_encoder_factory=encoder,
            gamma=gamma,
            observation_scaler=scaler,
        ),
        "DiscreteCQL": DiscreteCQLConfig(encoder_factory=encoder, gamma=gamma, observation_scaler=scaler),
        "DQN": DQNConfig(encoder_factory=encoder, gamma=gamma, observation_scaler=scaler),
        "DiscreteBC": DiscreteBCConfig(encoder_factory=encoder, observation_scaler=scaler),
    }
    configs["DiscreteVancoIQL short"] = configs["DiscreteVancoIQL"]
    if names is not None:
        configs = {k: v for k, v in configs.items() if k in names or k == "DiscreteVancoIQL"}
    algos = {}
    for name, config in configs.items():
        d3rlpy.seed(seed)
        algo = config.create()
        steps = max(1, size.train_steps // 5) if name.endswith("short") else size.train_steps
        with single_thread():
            algo.fit(
                result.dataset,
                n_steps=steps,
                n_steps_per_epoch=steps,
                logger_adapter=NoopAdapterFactory(),
                show_progress=False,
            )
        algos[name] = algo
    return algos


def panel(algos: dict[str, Any]) -> list[tuple[str, Any]]:
    """The calibration panel: reference policies, their perturbations, learned policies.

    A deterministic policy is listed once and evaluated greedy (fqe, lfqe, twin) and softened
    (importance sampling); ``e=0.3`` is a perturbation evaluated as that stochastic policy by all.
    """
    from vanco_pk.policies import ClinicianSettings, make_policy

    from vanco_offline.ope.policy import AlgoPolicy, ReferencePolicy

    careful = {
        f.name: getattr(ClinicianSettings(dose_sd=0.05, miss_prob=0.05, error_prob=0.01), f.name)
        for f in dataclasses.fields(ClinicianSettings)
    }
    sloppy = {
        f.name: getattr(ClinicianSettings(dose_sd=0.3, miss_prob=0.7, error_prob=0.15), f.name)
        for f in dataclasses.fields(ClinicianSettings)
    }
    return [
        ("clinician (logged)", ReferencePolicy(make_policy("clinician"), name="clinician")),
        ("clinician careful", ReferencePolicy(make_policy("clinician", **careful), name="clinician careful")),
        ("clinician sloppy", ReferencePolicy(make_policy("clinician", **sloppy), name="clinician sloppy")),
        ("MIPD", ReferencePolicy(make_policy("mipd"), name="MIPD")),
        ("MIPD e=0.3", ReferencePolicy(make_policy("mipd"), epsilon=0.3, name="MIPD")),
        ("oracle", ReferencePolicy(make_policy("oracle"), name="oracle")),
        ("fixed 1 g", ReferencePolicy(make_policy("fixed"), name="fixed 1 g")),
        ("random", ReferencePolicy(make_policy("random"), name="random")),
        (
            "DiscreteVancoIQL pi",
            AlgoPolicy(algos["DiscreteVancoIQL"], stochastic=True, name="DiscreteVancoIQL"),
        ),
        *((name, AlgoPolicy(algo, name=name)) for name, algo in algos.items()),
    ]
