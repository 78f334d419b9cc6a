"""The sampler's optional vLLM backend (``Sampling.backend`` vllm, or auto on CUDA with vllm
installed); untested on CPU machines."""

from __future__ import annotations

import torch

from posttrain.generation.sampler import Sampling


class VLLMEngine:
    """Rollouts with vLLM in the same process (colocated): weights are pushed from the policy before
    every rollout. Only used with backend=vllm|auto on CUDA when vllm is installed; the CPU test
    suite cannot exercise it. LoRA policies are merged on the fly before the push."""

    def __init__(self, model_path: str, gpu_memory_utilization: float = 0.3) -> None:
        from vllm import LLM

        self.llm = LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True)

    def _push_weights(self, policy) -> None:
        from posttrain.hf import is_peft

        if is_peft(policy):
            policy.merge_adapter()
        state = {
            k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in policy.state_dict().items()
        }
        state = {k: v for k, v in state.items() if "lora_" not in k}
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.model.load_weights(state.items())
        if is_peft(policy):
            policy.unmerge_adapter()

    def generate(self, policy, encoded: list[list[int]], sampling: Sampling, pad_id: int) -> torch.Tensor:
        from vllm import SamplingParams, TokensPrompt

        self._push_weights(policy)
        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k or -1,
            max_tokens=sampling.max_new_tokens,
            stop=list(sampling.stop) or None,
            include_stop_str_in_output=True,
        )
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=e) for e in encoded], params, use_tqdm=False)
        seqs = [list(o.outputs[0].token_ids) or [pad_id] for o in outs]
        width = max(len(s) for s in seqs)
        return torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], dtype=torch.long)
