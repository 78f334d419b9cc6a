"""A lean forward for Llama-family decoders (Llama, Qwen2, Qwen3, Mistral): the same arithmetic as
transformers' forward with a fraction of its per-call machinery. Plumbing for the online-RL
rollouts (``posttrain.rl.rollout``): sampling and the log-probs of sampled tokens.

Why: on small models and short sequences a transformers forward is mostly Python and dispatch
(mask construction, cache objects, output capture, decorators), not arithmetic; RL steps make
thousands of such calls. ``LeanDecoder`` calls the model's own sub-modules (embedding, norms,
q/k/v/o projections, MLP, LM head), so LoRA and other layer-wrapping PEFT adapters apply as in
the normal forward, and computes rotary embeddings, the attention mask and a preallocated KV
cache itself. tests/test_fastpath.py checks its logits and gradients against the model's own.

``lean_decoder(model)`` returns None, and callers use the model's forward, whenever the lean path
could differ from it: another architecture (Gemma, Phi-3, GPT-2, OLMo-2, ...: other norms, fused
or Conv1D projections, soft-capping), sliding-window layers (Mistral's ``sliding_window``, Qwen's
``layer_types``), prompt-learning PEFT (virtual tokens), gradient checkpointing, hooks on the
modules it bypasses (they would not run), or a distributed run (FSDP gathers weights in module
hooks). ``POSTTRAIN_FAST_FORWARD=0`` turns it off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")


def lean_decoder(model) -> LeanDecoder | None:
    """A LeanDecoder over ``model`` (a causal LM, possibly PEFT-wrapped), or None when unsupported."""
    if os.environ.get("POSTTRAIN_FAST_FORWARD", "1") == "0":
        return None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return None
    base = _base_model(model)
    if base is None:
        return None
    config = base.config
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return None
    if sliding_window_layers(config):
        return None
    inner = getattr(base, "model", None)
    if inner is None or getattr(inner, "gradient_checkpointing", False):
        return None
    bypassed = [model, base, inner, *inner.layers, *(layer.self_attn for layer in inner.layers)]
    if any(has_hooks(m) for m in bypassed):
        return None
    return LeanDecoder(base)


def has_hooks(module) -> bool:
    """Whether ``module`` has forward hooks other than transformers' output-capturing ones: those are
    installed by the first ``output_hidden_states`` call (posttrain.logit_chunks makes one) and record
    only inside such a call, which a lean forward never is."""
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return any(getattr(hook, "__module__", None) != "transformers.utils.output_capturing" for hook in hooks)


def sliding_window_layers(config) -> bool:
    """Whether some layer attends through a sliding window: Qwen2/Qwen3 name each layer's kind in
    ``layer_types``; Mistral has none and slides every layer when ``sliding_window`` is set."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return any(kind != "full_attention" for kind in layer_types)
    return getattr(config, "sliding_window", None) is not None


def _base_model(model):
    """The transformers model under a PEFT wrapper (None for prompt-learning PEFT: virtual tokens)."""
    if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
        if getattr(model, "active_peft_config", None) is None or model.active_peft_config.is_prompt_learning:
            return None
        return model.get_base_model()
    return model


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D) rotated by cos/sin (B, T, D), as transformers' apply_rotary_pos_emb."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def padded_causal_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: query i sees key j <= i when j is a real token. A padding query sees only
    itself, so its (unused) output stays finite instead of 0/0."""
    t = attention_mask.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=attention_mask.device).tril()
    eye = torch.eye(t, dtype=torch.bool, device=attention_mask.device)
    return ((causal & attention_mask.bool()[:, None, :]) | eye)[:, None]


def prompt_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows (pads get 1), as generate and posttrain.rl.rollout use."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)


def prompt_run_lengths(prompt_ids: torch.Tensor, prompt_attn: torch.Tensor) -> torch.Tensor:
    """Lengths of the runs of consecutive rows with the same prompt (ids and padding): [a, a, b, a] -> [2, 1, 1]."""
    same = (prompt_ids[1:] == prompt_ids[:-1]).all(-1) & (prompt_attn[1:] == prompt_attn[:-1]).all(-1)
    starts = torch.cat([torch.ones(1, dtype=torch.bool, device=prompt_ids.device), ~same]).nonzero().squeeze(-1)
    ends = torch.cat([starts[1:], torch.tensor([len(prompt_ids)], device=prompt_ids.device)])
    return ends - starts


def repeat_rows(x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Row i of x repeated counts[i] times; an expand when the counts are equal (its backward is a
    sum, several times cheaper on CPU than repeat_interleave's scatter-add)."""
    if len(counts) and bool((counts == counts[0]).all()):
        g = int(counts[0])
        return x[:, None].expand(x.shape[0], g, *x.shape[1:]).reshape(x.shape[0] * g, *x.shape[1:])
    return x.repeat_interleave(counts, 0)


@dataclass
class KVCache:
    """Preallocated keys and values per layer, (N, H_kv, capacity, D); ``length`` positions filled."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor  # (N, capacity) bool: which filled positions are real tokens
    length: int


class LeanDecoder:
    def __init__(self, model) -> None:
        self.model = model
        self.inner = model.model
        self.layers = list(self.inner.layers)
        first = self.layers[0].self_attn
        self.head_dim = first.head_dim
        self.scaling = first.scaling
        self.gqa = model.config.num_attention_heads != model.config.num_key_value_heads
        self.qk_norm = hasattr(first, "q_norm")

    def _attend(self, attn, h, cos, sin, layer_kv=None, mask=None) -> torch.Tensor:
        """One attention block on normed hidden states h (B, T, E); ``layer_kv(k, v)`` -> the keys and
        values to attend to (the cache's, with these appended)."""
        b, t, _ = h.shape
        q = attn.q_proj(h).view(b, t, -1, self.head_dim)
        k = attn.k_proj(h).view(b, t, -1, self.head_dim)
        if self.qk_norm:  # Qwen3: RMSNorm of each head's query and key, before the rotation
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = attn.v_proj(h).view(b, t, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        keys, values = (k, v) if layer_kv is None else layer_kv(k, v)
        dropout = attn.attention_dropout if attn.training else 0.0
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, dropout_p=dropout, scale=self.scaling, enable_gqa=self.gqa
        )
        return attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))

    def _blocks(self, x, cos, sin, mask, store=None) -> torch.Tensor:
        """The decoder layers; ``store(i, k, v) -> (keys, values)`` writes/reads the cache of layer i."""
        for i, layer in enumerate(self.layers):
            kv = None if store is None else (lambda k, v, i=i: store(i, k, v))
            attended = self._attend(layer.self_attn, layer.input_layernorm(x), cos, sin, kv, mask)
            x = x + attended
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.inner.norm(x)

    def completion_logits(self, input_ids, attention_mask, prompt_width: int) -> torch.Tensor:
        """(N, C, V) logits predicting each completion token of rollout rows (prompt left-padded to
        ``prompt_width``, completion right-padded), with each run of rows that share a prompt (the G
        samples of a prompt) running the prompt part once: the completions attend to its keys and
        values, and gradients from all of them flow back into it. Equal to the model's forward over
        prompt + completion with logits_to_keep = C + 1, the last dropped."""
        last, counts, hidden = self._completion_states(input_ids, attention_mask, prompt_width)
        first = repeat_rows(self.model.lm_head(last), counts)[:, None]  # predicts completion token 0
        return first if hidden is None else torch.cat([first, self.model.lm_head(hidden)], 1)

    def completion_hidden(self, input_ids, attention_mask, prompt_width: int) -> torch.Tensor:
        """(N, C, E) final hidden states that ``completion_logits`` applies the LM head to (for
        posttrain.logit_chunks, which applies it in chunks)."""
        last, counts, hidden = self._completion_states(input_ids, attention_mask, prompt_width)
        first = repeat_rows(last, counts)[:, None]
        return first if hidden is None else torch.cat([first, hidden], 1)

    def _completion_states(self, input_ids, attention_mask, prompt_width: int):
        """(last prompt position's hidden state per shared prompt, the run lengths, the completion
        positions' hidden states (N, C - 1, E) or None when C = 1)."""
        prompt, completion = input_ids[:, :prompt_width], input_ids[:, prompt_width:]
        prompt_attn, completion_attn = attention_mask[:, :prompt_width], attention_mask[:, prompt_width:]
        counts = prompt_run_lengths(prompt, prompt_attn)
        firsts = torch.cumsum(counts, 0) - counts
        shared_ids, shared_attn = prompt[firsts], prompt_attn[firsts]
        x = self.inner.embed_tokens(shared_ids)
        cos, sin = self.inner.rotary_emb(x, prompt_positions(shared_attn))
        prompt_kv: list[tuple[torch.Tensor, torch.Tensor]] = []

        def keep_prompt(i, k, v):
            prompt_kv.append((repeat_rows(k, counts), repeat_rows(v, counts)))
            return k, v

        last = self._blocks(x, cos, sin, padded_causal_mask(shared_attn), keep_prompt)[:, -1]

        def after_prompt(i, k, v):
            pk, pv = prompt_kv[i]
            return torch.cat([pk, k], 2), torch.cat([pv, v], 2)

        c = completion.shape[1] - 1  # the last completion token is never the input of a kept prediction
        if c == 0:
            return last, counts, None
        x = self.inner.embed_tokens(completion[:, :c])
        start = prompt_attn.sum(-1, keepdim=True)
        cos, sin = self.inner.rotary_emb(x, start + torch.arange(c, device=x.device))
        causal = torch.ones(c, c, dtype=torch.bool, device=x.device).tril() & completion_attn[:, :c].bool()[:, None, :]
        seen = torch.cat([prompt_attn.bool()[:, None, :].expand(-1, c, -1), causal], -1)[:, None]
        return last, counts, self._blocks(x, cos, sin, seen, after_prompt)

    def prefill(self, input_ids, attention_mask, position_ids, repeat: int, capacity: int):
        """(last-position logits (B x repeat, V), KVCache) for left-padded prompts, each prompt's
        cache repeated ``repeat`` times (rows of a prompt contiguous), room for ``capacity`` positions."""
        x = self.inner.embed_tokens(input_ids)
        cos, sin = self.inner.rotary_emb(x, position_ids)
        b, t = input_ids.shape
        n = b * repeat
        keys, values = [], []

        def store(i, k, v):
            for target, new in ((keys, k), (values, v)):
                buffer = new.new_zeros(n, new.shape[1], capacity, new.shape[3])
                buffer[:, :, :t] = new.repeat_interleave(repeat, 0)
                target.append(buffer)
            return k, v

        hidden = self._blocks(x, cos, sin, padded_causal_mask(attention_mask), store)
        mask = torch.zeros(n, capacity, dtype=torch.bool, device=input_ids.device)
        mask[:, :t] = attention_mask.bool().repeat_interleave(repeat, 0)
        logits = self.model.lm_head(hidden[:, -1]).repeat_interleave(repeat, 0)
        return logits, KVCache(keys, values, mask, t)

    def decode(self, tokens: torch.Tensor, position_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (N, V) of one new token per row at ``position_ids`` (N, 1); appends to ``cache``."""
        at = cache.length
        cache.mask[:, at] = True
        x = self.inner.embed_tokens(tokens[:, None])
        cos, sin = self.inner.rotary_emb(x, position_ids)
        mask = cache.mask[:, None, None, : at + 1]

        def store(i, k, v):
            cache.keys[i][:, :, at : at + 1] = k
            cache.values[i][:, :, at : at + 1] = v
            return cache.keys[i][:, :, : at + 1], cache.values[i][:, :, : at + 1]

        hidden = self._blocks(x, cos, sin, mask, store)
        cache.length = at + 1
        return self.model.lm_head(hidden[:, -1])
