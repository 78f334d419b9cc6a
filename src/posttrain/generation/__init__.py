"""Generation: one sampler (hf, native and vLLM backends) and one completion log-prob contract,
used by evaluation, inference and rollouts. No torch import here.
"""
