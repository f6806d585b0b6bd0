"""The training loop shared by VancoIQL and DiscreteVancoIQL: d3rlpy's, fed on the device.

``fit``/``fitter`` keep d3rlpy's signature, logging, evaluators, callbacks and
checkpoints, and hand ``update`` a ``TransitionMiniBatch`` every step: this mixin
validates the data, lays the transitions out once as scaled tensors on the algorithm's
device and draws each mini-batch there
(:class:`~vanco_offline.algos.fast.device_sampler.TorchTransitionSampler`); the losses stay on the
device until a logging interval reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

import numpy as np
import torch
from d3rlpy.algos.utility import assert_action_space_with_dataset, build_scalers_with_transition_picker
from d3rlpy.base import save_config
from d3rlpy.constants import LoggingStrategy
from d3rlpy.dataset import ReplayBufferBase, TransitionMiniBatch
from d3rlpy.logging import D3RLPyLogger, FileAdapterFactory, LoggerAdapterFactory
from d3rlpy.metrics import EvaluatorProtocol
from d3rlpy.torch_utility import TorchMiniBatch
from tqdm.auto import tqdm

from vanco_offline.algos.fast.device_sampler import DeviceMiniBatch, TorchTransitionSampler
from vanco_offline.algos.fast.graph import GraphedUpdate
from vanco_offline.algos.fast.sampler import FlatTransitions, has_tuple_observations, seed_from_global_numpy
from vanco_offline.algos.torch.vanco_iql_impl import DeviceLosses

__all__ = ["SMALL_NETWORK_UNITS", "FastFitMixin", "fit_threads"]

#: Networks whose widest hidden layer has at most this many units train on one thread.
SMALL_NETWORK_UNITS = 64
# d3rlpy's DefaultEncoderFactory builds [256, 256].
_DEFAULT_HIDDEN = (256, 256)


def fit_threads(config: Any) -> int | None:
    """Torch threads for training ``config``'s networks: 1 for small ones, else None (torch's choice).

    A [32, 32] update is a few dozen tiny kernels; splitting each over OpenMP threads
    costs more in synchronisation than it saves, and on a busy machine a thread that is
    descheduled stalls every kernel (docs/benchmark.md, "Training speed", compares the
    thread counts).
    """
    widest = 0
    for name in ("actor_encoder_factory", "critic_encoder_factory", "value_encoder_factory"):
        factory = getattr(config, name, None)
        units = getattr(factory, "hidden_units", None) or _DEFAULT_HIDDEN
        widest = max(widest, *units)
    return 1 if widest <= SMALL_NETWORK_UNITS else None


class _LossMeter:
    """Running sums of the update metrics: on the device for :class:`DeviceLosses`, in Python otherwise."""

    def __init__(self) -> None:
        self._names: tuple[str, ...] = ()
        self._total: torch.Tensor | None = None
        self._count = 0
        self._host: dict[str, list[float]] = {}

    def add(self, loss: Any) -> None:
        if isinstance(loss, DeviceLosses) and (self._total is None or loss.names == self._names):
            if self._total is None:
                self._names = loss.names
                self._total = torch.zeros(len(loss.names), dtype=torch.float64, device=loss.stacked.device)
            self._total += loss.stacked
            self._count += 1
        else:
            for name, value in loss.items():
                self._host.setdefault(name, []).append(float(value))

    def means(self) -> dict[str, float]:
        """The mean of each metric since the last :meth:`flush` (one device-to-host copy)."""
        out = {}
        if self._total is not None and self._count:
            out = {k: v / self._count for k, v in zip(self._names, self._total.tolist(), strict=True)}
        return out | {k: float(np.mean(v)) for k, v in self._host.items()}

    def flush(self, logger: D3RLPyLogger) -> None:
        for name, value in self.means().items():
            logger.add_metric(name, value)
        self._total, self._count, self._host = None, 0, {}


class FastFitMixin:
    """Overrides ``fitter`` and ``update`` of a d3rlpy ``QLearningAlgoBase`` subclass."""

    _fit_sampler: TorchTransitionSampler | None = None
    _graphed: GraphedUpdate | None = None

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
        """d3rlpy's ``fitter`` with validated data and mini-batches drawn on the device.

        Same arguments, loop and behaviour as ``d3rlpy.algos.QLearningAlgoBase.fitter``
        (logging, evaluators, callbacks, checkpoints; ``update`` receives a
        ``TransitionMiniBatch`` of ``batch_size`` rows every step). In addition the
        transitions are checked (finite values; action range, see the config) before any
        model is built; the mini-batch indices are drawn on the algorithm's device
        (:class:`~vanco_offline.algos.fast.device_sampler.DeviceMiniBatch`) and the losses summed there,
        read once per logging interval; with ``compile_graph=True`` on CUDA the whole
        update is one replayed CUDA graph (:class:`~vanco_offline.algos.fast.graph.GraphedUpdate`);
        small networks train on one torch thread (:func:`fit_threads`; the previous
        setting is restored when the generator finishes or is closed). Tuple observations
        train through d3rlpy's own sampler and update, after the same checks.
        """
        if n_steps_per_epoch <= 0 or n_steps < n_steps_per_epoch:
            raise ValueError(
                f"n_steps={n_steps} and n_steps_per_epoch={n_steps_per_epoch}: d3rlpy runs "
                "n_steps // n_steps_per_epoch epochs, so n_steps must be >= n_steps_per_epoch > 0"
            )
        algo: Any = self
        loop = dict(
            n_steps=n_steps,
            n_steps_per_epoch=n_steps_per_epoch,
            logging_steps=logging_steps,
            logging_strategy=logging_strategy,
            experiment_name=experiment_name,
            with_timestamp=with_timestamp,
            logger_adapter=logger_adapter,
            show_progress=show_progress,
            save_interval=save_interval,
            evaluators=evaluators,
            callback=callback,
            epoch_callback=epoch_callback,
        )
        if has_tuple_observations(dataset):
            build_scalers_with_transition_picker(algo, dataset)
            joined = FlatTransitions.from_dataset(dataset, join_tuple_observations=True)
            self._check_training_data(joined, dataset)
            yield from super().fitter(dataset=dataset, **loop)  # type: ignore[misc]
            return
        flat = FlatTransitions.from_dataset(dataset)
        build_scalers_with_transition_picker(algo, dataset)
        self._check_training_data(flat, dataset)
        sampler = TorchTransitionSampler(
            flat,
            device=algo._device,
            seed=seed_from_global_numpy(),
            observation_scaler=algo.observation_scaler,
            action_scaler=algo.action_scaler,
            reward_scaler=algo.reward_scaler,
        )
        threads, previous = fit_threads(algo.config), torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            yield from self._fit_loop(dataset, sampler, **loop)
        finally:
            torch.set_num_threads(previous)
            self._fit_sampler = self._graphed = None

    def _fit_loop(
        self,
        dataset: ReplayBufferBase,
        sampler: TorchTransitionSampler,
        n_steps: int,
        n_steps_per_epoch: int,
        logging_steps: int,
        logging_strategy: LoggingStrategy,
        experiment_name: str | None,
        with_timestamp: bool,
        logger_adapter: LoggerAdapterFactory,
        show_progress: bool,
        save_interval: int,
        evaluators: dict[str, EvaluatorProtocol] | None,
        callback: Callable[[Any, int, int], None] | None,
        epoch_callback: Callable[[Any, int, int], None] | None,
    ) -> Generator[tuple[int, dict[str, float]], None, None]:
        # d3rlpy's QLearningAlgoBase.fitter, step for step, except where the batch comes
        # from and that the losses are summed on the device.
        algo: Any = self
        assert_action_space_with_dataset(algo, dataset.dataset_info)
        if algo.impl is None:
            observation_shape = tuple(sampler.observations.shape[1:])
            algo.create_impl(observation_shape, dataset.dataset_info.action_size)
        self._fit_sampler = sampler
        logger = D3RLPyLogger(
            algo=algo,
            adapter_factory=logger_adapter,
            experiment_name=experiment_name or type(self).__name__,
            n_steps_per_epoch=n_steps_per_epoch,
            with_timestamp=with_timestamp,
        )
        save_config(algo, logger)
        batch_size = algo.config.batch_size
        n_epochs = n_steps // n_steps_per_epoch
        total_step = 0
        metrics: dict[str, float] = {}
        for epoch in range(1, n_epochs + 1):
            meter, epoch_meter = _LossMeter(), _LossMeter()
            range_gen = tqdm(
                range(n_steps_per_epoch), disable=not show_progress, desc=f"Epoch {epoch}/{n_epochs}"
            )
            for itr in range_gen:
                with logger.measure_time("step"):
                    with logger.measure_time("sample_batch"):
                        batch = sampler.sample_minibatch(batch_size)
                    with logger.measure_time("algorithm_update"):
                        loss = self.update(batch)
                    meter.add(loss)
                    if show_progress:
                        epoch_meter.add(loss)
                        # d3rlpy refreshes every 10 steps; every 100 keeps the device ahead.
                        if itr % 100 == 0:
                            range_gen.set_postfix(epoch_meter.means())
                total_step += 1
                if logging_strategy == LoggingStrategy.STEPS and total_step % logging_steps == 0:
                    meter.flush(logger)
                    metrics = logger.commit(epoch, total_step)
                if callback:
                    callback(algo, epoch, total_step)
            if epoch_callback:
                epoch_callback(algo, epoch, total_step)
            if evaluators:
                for name, evaluator in evaluators.items():
                    logger.add_metric(name, evaluator(algo, dataset))
            if logging_strategy == LoggingStrategy.EPOCH:
                meter.flush(logger)
                metrics = logger.commit(epoch, total_step)
            if epoch % save_interval == 0:
                logger.save_model(total_step, algo)
            yield epoch, metrics
        logger.close()

    def update(self, batch: TransitionMiniBatch | TorchMiniBatch) -> Mapping[str, float]:
        """One gradient step on a d3rlpy ``TransitionMiniBatch`` (or an already scaled ``TorchMiniBatch``).

        A :class:`~vanco_offline.algos.fast.device_sampler.DeviceMiniBatch` drawn by this algorithm's
        own ``fit`` is used as the device tensors it carries; any other mini-batch goes
        through d3rlpy's conversion and scalers. Returns the metrics (floats; kept on the
        device until read).
        """
        algo: Any = self
        if isinstance(batch, DeviceMiniBatch) and batch.sampler is self._fit_sampler:
            if algo.compiled:
                if self._graphed is None:
                    self._graphed = GraphedUpdate(algo._impl, batch.sampler, len(batch))
                loss = self._graphed(batch.indices)
                algo._grad_step += 1
                return loss
            batch = batch.torch_batch
        if isinstance(batch, TorchMiniBatch):
            if algo._impl is None:
                raise ValueError("the algorithm has no networks yet: call build_with_dataset or fit first")
            loss = algo._impl.update(batch, algo._grad_step)
            algo._grad_step += 1
            return loss
        return super().update(batch)  # type: ignore[misc]
