"""The training loop shared by VancoIQL and DiscreteVancoIQL: d3rlpy's, fed by a fast sampler.

``fit``/``fitter`` keep d3rlpy's signature, logging, evaluators, callbacks and
checkpoints: this mixin validates the data, lays the transitions out once as scaled
tensors and hands d3rlpy's own ``fitter`` a dataset view whose mini-batches come from
:class:`~vanco_offline.algos.sampler.TorchTransitionSampler`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch
from d3rlpy.algos.utility import build_scalers_with_transition_picker
from d3rlpy.constants import LoggingStrategy
from d3rlpy.dataset import ReplayBufferBase, TransitionMiniBatch
from d3rlpy.logging import FileAdapterFactory, LoggerAdapterFactory
from d3rlpy.metrics import EvaluatorProtocol
from d3rlpy.torch_utility import TorchMiniBatch

from vanco_offline.algos.sampler import (
    FastReplayBuffer,
    FlatTransitions,
    TorchTransitionSampler,
    seed_from_global_numpy,
)

__all__ = ["SMALL_NETWORK_UNITS", "FastFitMixin", "check_finite", "fit_threads"]

#: Networks whose widest hidden layer has at most this many units train on one thread.
SMALL_NETWORK_UNITS = 64
# d3rlpy's DefaultEncoderFactory builds [256, 256].
_DEFAULT_HIDDEN = (256, 256)


def fit_threads(config: Any) -> int | None:
    """Torch threads for training ``config``'s networks: 1 for small ones, else None (torch's choice).

    A [32, 32] update is a few dozen tiny kernels; splitting each over OpenMP threads
    costs more in synchronisation than it saves, and on a busy machine a thread that is
    descheduled stalls every kernel (measured: 100 IQL updates took 0.5 s on one thread
    and 40 s on two while other jobs shared the two cores).
    """
    widest = 0
    for name in ("actor_encoder_factory", "critic_encoder_factory", "value_encoder_factory"):
        factory = getattr(config, name, None)
        units = getattr(factory, "hidden_units", None) or _DEFAULT_HIDDEN
        widest = max(widest, *units)
    return 1 if widest <= SMALL_NETWORK_UNITS else None


class _TorchBatchView(FastReplayBuffer):
    # Internal to fit: the d3rlpy loop only passes the batch on to ``algo.update``, which
    # accepts a ready TorchMiniBatch; evaluators get the user's dataset, not this view.
    def __init__(self, dataset: ReplayBufferBase, flat: FlatTransitions, sampler: TorchTransitionSampler):
        super().__init__(dataset, seed=0, flat=flat)
        self._sampler = sampler

    def sample_transition_batch(self, batch_size: int) -> Any:
        return self._sampler.sample(batch_size)


def _bind_dataset(evaluator: EvaluatorProtocol, dataset: ReplayBufferBase) -> EvaluatorProtocol:
    def evaluate(algo: Any, _view: ReplayBufferBase) -> float:
        return evaluator(algo, dataset)

    return evaluate


def check_finite(flat: FlatTransitions, algo_name: str) -> None:
    """ValueError naming the field, episode and step of the first NaN/inf in the training data."""
    for field in ("observations", "actions", "rewards"):
        values = getattr(flat, field)
        bad = ~np.isfinite(values).all(axis=tuple(range(1, values.ndim)))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{algo_name}: {int(bad.sum())} transition(s) have NaN or infinite {field}; the first "
                f"is episode {int(flat.episode_index[row])}, step {int(flat.step_index[row])}. Impute "
                "or remove them when converting the table (vanco_offline.data) before training"
            )


class FastFitMixin:
    """Overrides ``fitter`` and ``update`` of a d3rlpy ``QLearningAlgoBase`` subclass."""

    def _check_training_data(self, flat: FlatTransitions, dataset: ReplayBufferBase) -> None:
        raise NotImplementedError

    def fitter(
        self,
        dataset: ReplayBufferBase,
        n_steps: int,
        n_steps_per_epoch: int = 10000,
        logging_steps: int = 500,
        logging_strategy: LoggingStrategy = LoggingStrategy.EPOCH,
        experiment_name: str | None = None,
        with_timestamp: bool = True,
        logger_adapter: LoggerAdapterFactory = FileAdapterFactory(),  # noqa: B008  (d3rlpy's default)
        show_progress: bool = True,
        save_interval: int = 1,
        evaluators: dict[str, EvaluatorProtocol] | None = None,
        callback: Callable[[Any, int, int], None] | None = None,
        epoch_callback: Callable[[Any, int, int], None] | None = None,
    ) -> Generator[tuple[int, dict[str, float]], None, None]:
        """d3rlpy's ``fitter`` with validated data and vectorised mini-batch sampling.

        Same arguments and behaviour as ``d3rlpy.algos.QLearningAlgoBase.fitter``; in
        addition the transitions are checked (finite values; action range, see the
        config) before any model is built, evaluators receive ``dataset`` itself, and
        small networks train on one torch thread (:func:`fit_threads`; the previous
        setting is restored when the generator finishes or is closed).
        """
        if n_steps_per_epoch <= 0 or n_steps < n_steps_per_epoch:
            raise ValueError(
                f"n_steps={n_steps} and n_steps_per_epoch={n_steps_per_epoch}: d3rlpy runs "
                "n_steps // n_steps_per_epoch epochs, so n_steps must be >= n_steps_per_epoch > 0"
            )
        algo: Any = self
        flat = FlatTransitions.from_dataset(dataset)
        build_scalers_with_transition_picker(algo, dataset)
        self._check_training_data(flat, dataset)
        sampler = TorchTransitionSampler(
            flat,
            device=algo._device,
            rng=np.random.default_rng(seed_from_global_numpy()),
            observation_scaler=algo.observation_scaler,
            action_scaler=algo.action_scaler,
            reward_scaler=algo.reward_scaler,
        )
        bound = {k: _bind_dataset(v, dataset) for k, v in evaluators.items()} if evaluators else None
        threads, previous = fit_threads(algo.config), torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            yield from super().fitter(  # type: ignore[misc]
                dataset=_TorchBatchView(dataset, flat, sampler),
                n_steps=n_steps,
                n_steps_per_epoch=n_steps_per_epoch,
                logging_steps=logging_steps,
                logging_strategy=logging_strategy,
                experiment_name=experiment_name,
                with_timestamp=with_timestamp,
                logger_adapter=logger_adapter,
                show_progress=show_progress,
                save_interval=save_interval,
                evaluators=bound,
                callback=callback,
                epoch_callback=epoch_callback,
            )
        finally:
            torch.set_num_threads(previous)

    def update(self, batch: TransitionMiniBatch | TorchMiniBatch) -> dict[str, float]:
        """One gradient step on a d3rlpy ``TransitionMiniBatch`` or an already scaled ``TorchMiniBatch``."""
        algo: Any = self
        if isinstance(batch, TorchMiniBatch):
            if algo._impl is None:
                raise ValueError("the algorithm has no networks yet: call build_with_dataset or fit first")
            loss = algo._impl.update(batch, algo._grad_step)
            algo._grad_step += 1
            return loss
        return super().update(batch)  # type: ignore[misc]
