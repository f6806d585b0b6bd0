"""The speed wing: what makes VancoIQL-family training fast, and nothing the algorithms' maths needs.

- :mod:`~vanco_offline.algos.fast.fitting`: d3rlpy's ``fit`` loop with the transitions laid
  out once as scaled tensors on the device, mini-batches drawn there and the losses summed
  there (``update`` still receives a ``TransitionMiniBatch`` and returns a ``Mapping``).
- :mod:`~vanco_offline.algos.fast.sampler` and :mod:`~vanco_offline.algos.fast.device_sampler`:
  the flat transitions and the samplers (numpy and torch).
- :mod:`~vanco_offline.algos.fast.graph`: the whole update as one CUDA graph (``compile_graph=True``).
- :mod:`~vanco_offline.algos.fast.seeds`: several seeds trained as one batched model (``fit_seeds``).
- :mod:`~vanco_offline.algos.fast.optimizers`: d3rlpy's Adam as torch's fused kernel.

The algorithms (:mod:`vanco_offline.algos.vanco_iql` and its impl) are d3rlpy's IQL layout;
this package only feeds them. The measured speed-ups are in docs/benchmark.md.
"""
