"""The embedded process reward model (PRM) of the reasoning task: a per-step verifier, trained once.

A separate token-classification model (``LlamaForTokenClassification``, one logit per token, read
at the end of every step) with the policy's byte-level tokenizer: the format of
``posttrain.scoring.scorers.load_prm`` / ``score_steps`` and of the ``prm`` plugin, so
``--set prm=PATH`` and this model (``--set prm=embedded``) are interchangeable. Its transformer is
initialised from the embedded reasoning model (hidden 64, 3 layers, ~214K parameters with the new
head), as Math-Shepherd and Lightman et al. initialise a PRM from the generator's own LM, then
trained the way Lightman et al. 2023 ("Let's Verify Step by Step", arXiv:2305.20050) and Wang et
al. 2023 (Math-Shepherd, arXiv:2312.08935) train theirs:

- on solution traces of TRAINING-split problems only (the held-out split is a hash of the
  operands; ``prm_examples`` refuses a held-out problem),
- traces sampled from the reasoning model itself (its on-distribution mistakes, at the search
  temperatures 0.8 and 1.0), plus the correct scratchpad and one coherent wrong trace per problem
  (one wrong column sum, the rest carried on from it, as in the task's preference data),
- with one binary label per step: is the solution still correct after this step
  (``reasoning.step_labels``, i.e. the exact human-equivalent labels of PRM800K, without its
  neutral class), binary cross-entropy at each step's last token.

At test time the PRM sees only the problem and the steps; the task's checker never scores.
Preparation: ~255 CPU-seconds (1 thread), cached in ``$POSTTRAIN_CACHE/embedded/scratch2x3-prm-v1-seed0``;
``prm.json`` there records the held-out step accuracy and the correct-vs-wrong discrimination.

Deviations (recorded in ``prm.json`` too):
1. Step labels are the task's exact per-step labels (PRM800K-style human-equivalent labels), not
   Math-Shepherd's Monte-Carlo rollout estimates (the ``prm`` plugin does those).
2. Dense supervision: besides each step end, every token of a step is labelled (is the text so
   far a prefix of the correct scratchpad?), and an auxiliary next-token loss on the correct part
   of every trace (weight ``PRM_LM_WEIGHT``, through the tied embeddings) keeps the backbone a
   solver of the task. The LM head is not saved (tied to the embeddings, it adds no weights).
3. Same size as the policy, not larger: a from-scratch hidden-128 / 4-layer PRM (``PRM_INIT =
   "scratch"``, ``PRM_SHAPE``) reached only 86.6% held-out step accuracy after 2000 steps and 470
   CPU-seconds, over the preparation budget; initialised from the policy it reaches ~92% in 3000
   steps and ~255 CPU-seconds.
4. Training stops when step accuracy on a validation set of training-split problems first reaches
   ``PRM_TARGET`` (or at ``PRM_MAX_STEPS``); the held-out numbers in ``prm.json`` are measured
   once, after training, on held-out problems.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from posttrain.embedded.model import build_model, cache_root, cached_model

PRM_SHAPE = dict(
    hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, intermediate_size=512
)
PRM_VERSION = "v1"  # bump when the recipe below changes, so stale caches are not reused
PRM_TRAIN_PROBLEMS = 6000
PRM_SAMPLES = {0.8: 1, 1.0: 1}  # sampling temperature -> traces per training problem from the policy
PRM_TARGET = 0.98
PRM_MAX_STEPS = 3000
PRM_CHECK_EVERY = 250
PRM_LM_WEIGHT = 0.5
PRM_INIT = "policy"  # policy: the reasoning model's transformer + a new head; scratch: PRM_SHAPE
PRM_LR = 1e-3
PRM_HELDOUT_PROBLEMS = 200
EMBEDDED_PRM = "embedded"  # the value of --set prm= that names this model


def prm_model_dir(seed: int = 0, console=None) -> Path:
    """Folder of the embedded PRM (shipped for seed 0, else built on first use and cached); load it
    with ``posttrain.scoring.scorers.load_prm``."""
    from posttrain.embedded.frozen import model_dir
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task

    target = cache_root() / "embedded" / f"{task.name}-prm-{PRM_VERSION}-seed{seed}"
    return model_dir(
        "prm",
        seed,
        lambda: cached_model(
            target, lambda out: build_prm_model(seed, out, console), "process reward model", console, marker="prm.json"
        ),
    )


# --- data (pure Python) ---------------------------------------------------------------------------


def trace_record(numbers: tuple[int, ...], steps: list[str], source: str) -> dict:
    """One PRM example: the problem, its steps and the exact per-step labels."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import step_labels

    return {
        "prompt": task.prompt(numbers),
        "numbers": list(numbers),
        "steps": list(steps),
        "labels": step_labels(numbers, steps, task.digits),
        "source": source,
    }


def prm_examples(problems: list[dict], sampled: list[list[str]], seed: int, split: str = "train") -> list[dict]:
    """PRM examples of ``problems`` (records with ``numbers``): per problem the correct trace, one
    coherent wrong trace, and its policy samples ``sampled[i]`` (texts, split into steps).

    With ``split="train"`` a held-out problem is an error: the PRM never trains on one."""
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.reasoning import split_steps, wrong_trace

    if len(sampled) != len(problems):
        raise ValueError(f"{len(problems)} problems but {len(sampled)} sample lists")
    rng = random.Random(f"prm-examples-{split}-{seed}")
    out = []
    for record, texts in zip(problems, sampled, strict=True):
        nums = tuple(record["numbers"])
        if split == "train" and task.is_heldout(nums):
            raise ValueError(f"{task.prompt(nums)} is a held-out problem; the PRM trains on training problems only")
        out.append(trace_record(nums, task.steps(nums), "correct"))
        out.append(trace_record(nums, wrong_trace(nums, task.digits, rng), "wrong"))
        for text in texts:
            steps = split_steps(text)
            if steps:
                out.append(trace_record(nums, steps, "sampled"))
    return out


# --- training ---------------------------------------------------------------------------------------


def encode_example(tokenizer, example: dict) -> dict:
    """Token ids; the step-end positions with their 0/1 step labels; a 0/1 label at every step
    token (is the text so far a prefix of the correct scratchpad? at a step end: the step label),
    the dense supervision of the head; and next-token targets on the correct prefix of the trace
    (-100 elsewhere) for the auxiliary LM loss."""
    from posttrain.data import prompt_ids
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task

    correct = task.solution(tuple(example["numbers"])) if "numbers" in example else None
    ids = list(prompt_ids(tokenizer, example["prompt"]))
    lm = [-100] * len(ids)
    dense = [-100.0] * len(ids)
    ends, labels, text = [], [], ""
    for step, ok in zip(example["steps"], example["labels"], strict=True):
        piece = list(tokenizer(step, add_special_tokens=False)["input_ids"])
        if not piece:
            break
        for tid in piece:
            text += tokenizer.decode([tid])
            dense.append(float(correct is not None and correct.startswith(text)))
        dense[-1] = float(ok)
        ids += piece
        lm += piece if ok else [-100] * len(piece)
        ends.append(len(ids) - 1)
        labels.append(float(ok))
    if example["labels"] and all(example["labels"]) and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)  # the finished correct solution ends with EOS for the LM loss
        lm.append(tokenizer.eos_token_id)
        dense.append(-100.0)
    # lm[t] is the target of position t - 1 (next-token prediction)
    return {"input_ids": ids, "lm_targets": lm[1:] + [-100], "dense": dense, "ends": ends, "labels": labels}


def _batch(encoded: list[dict], pad_id: int):
    import torch

    width = max(len(e["input_ids"]) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    lm = torch.full((len(encoded), width), -100, dtype=torch.long)
    step = torch.full((len(encoded), width), -100.0)
    for i, e in enumerate(encoded):
        n = len(e["input_ids"])
        ids[i, :n], attn[i, :n], lm[i, :n] = torch.tensor(e["input_ids"]), 1, torch.tensor(e["lm_targets"])
        step[i, :n] = torch.tensor(e["dense"])
    return ids, attn, lm, step


def build_prm(tokenizer, seed: int):
    """A freshly initialised one-label token classifier (``PRM_SHAPE``) for the byte tokenizer."""
    from transformers import LlamaForTokenClassification

    return build_model(tokenizer, seed, PRM_SHAPE, LlamaForTokenClassification, num_labels=1, classifier_dropout=0.0)


def prm_from_policy(folder: Path):
    """The reasoning policy's transformer with a new one-logit head (the way Math-Shepherd and
    Lightman et al. initialise a PRM: from the generator's own LM)."""
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification

    from posttrain.hf import quiet_transformers

    quiet_transformers()
    config = AutoConfig.from_pretrained(folder, num_labels=1)
    config.classifier_dropout = 0.0
    return AutoModelForTokenClassification.from_pretrained(folder, config=config, dtype=torch.float32)


def prm_losses(model, ids, attn, lm, step):
    """(BCE at step ends, auxiliary next-token NLL on the correct prefixes) of one batch."""
    import torch.nn.functional as F

    hidden = model.model(input_ids=ids, attention_mask=attn).last_hidden_state
    logits = model.score(hidden)[..., 0].float()
    mask = step != -100.0
    bce = F.binary_cross_entropy_with_logits(logits[mask], step[mask])
    lm_logits = hidden @ model.model.embed_tokens.weight.T
    nll = F.cross_entropy(lm_logits.reshape(-1, lm_logits.shape[-1]).float(), lm.reshape(-1), ignore_index=-100)
    return bce, nll


def step_probs(model, encoded: list[dict], pad_id: int, batch_size: int = 256) -> list[list[float]]:
    """P(still correct) at every step end of every encoded example (eval mode, no grad)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            ids, attn, _, _ = _batch(chunk, pad_id)
            probs = torch.sigmoid(model(input_ids=ids, attention_mask=attn).logits[..., 0].float())
            out += [probs[i, e["ends"]].tolist() for i, e in enumerate(chunk)]
    model.train()
    return out


def step_accuracy(probs: list[list[float]], encoded: list[dict]) -> float:
    pairs = [
        (p > 0.5) == (y >= 0.5)
        for ps, e in zip(probs, encoded, strict=True)
        for p, y in zip(ps, e["labels"], strict=False)
    ]
    return sum(pairs) / max(1, len(pairs))


def auc(positive: list[float], negative: list[float]) -> float:
    """P(a random positive scores above a random negative), ties counting half (ROC AUC)."""
    if not positive or not negative:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def _sampled(policy, tokenizer, problems: list[dict], samples: dict[float, int]) -> list[list[str]]:
    from posttrain.generation.decode import generate

    out: list[list[str]] = [[] for _ in problems]
    for temperature, k in samples.items():
        texts = generate(
            policy,
            tokenizer,
            [r["prompt"] for r in problems for _ in range(k)],
            16,
            512,
            temperature=temperature,
            top_k=0,
        )
        for i, t in enumerate(texts):
            out[i // k].append(t)
    return out


def discrimination(model, tokenizer, problems: list[dict], sampled: list[list[str]], seed: int) -> dict:
    """Held-out measures: step accuracy (all traces, and the policy's samples alone), and how well
    the last-step score separates correct from wrong complete solutions (ROC AUC, accuracy at 0.5,
    and correct-vs-one-step-wrong pairs of the same problem ranked right)."""
    examples = prm_examples(problems, sampled, seed, split="test")
    encoded = [encode_example(tokenizer, e) for e in examples]
    probs = step_probs(model, encoded, tokenizer.pad_token_id)
    sampled_idx = [i for i, e in enumerate(examples) if e["source"] == "sampled"]
    last = [
        (ps[-1] if ps else 0.0, bool(e["labels"]) and all(e["labels"])) for ps, e in zip(probs, examples, strict=True)
    ]
    complete = [i for i, e in enumerate(examples) if e["steps"] and e["steps"][-1].startswith("#")]
    pos = [last[i][0] for i in complete if last[i][1]]
    neg = [last[i][0] for i in complete if not last[i][1]]
    pairs = [(last[i][0], last[i + 1][0]) for i, e in enumerate(examples) if e["source"] == "correct"]
    return {
        "heldout_problems": len(problems),
        "heldout_traces": len(examples),
        "heldout_step_accuracy": round(step_accuracy(probs, encoded), 4),
        "heldout_sampled_step_accuracy": round(
            step_accuracy([probs[i] for i in sampled_idx], [encoded[i] for i in sampled_idx]), 4
        ),
        "heldout_solution_auc": round(auc(pos, neg), 4),
        "heldout_solution_accuracy": round(
            (sum(p > 0.5 for p in pos) + sum(n <= 0.5 for n in neg)) / max(1, len(pos) + len(neg)), 4
        ),
        "heldout_correct_vs_wrong_pairs": round(sum(c > w for c, w in pairs) / max(1, len(pairs)), 4),
        "heldout_mean_score_correct": round(sum(pos) / max(1, len(pos)), 4),
        "heldout_mean_score_wrong": round(sum(neg) / max(1, len(neg)), 4),
    }


def build_prm_model(seed: int, out: Path, console=None) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from posttrain.embedded.model import reasoning_model_dir
    from posttrain.embedded.reasoning import DEFAULT_REASONING_TASK as task
    from posttrain.embedded.tokenizer import build_tokenizer

    started = time.process_time()
    tokenizer = build_tokenizer()
    policy = LlamaForCausalLM.from_pretrained(reasoning_model_dir(seed, console), dtype=torch.float32).eval()
    torch.manual_seed(seed)
    train_problems = task.prompts(PRM_TRAIN_PROBLEMS, seed, "train")
    val_problems = task.prompts(300, seed + 500, "train")
    heldout_problems = task.prompts(PRM_HELDOUT_PROBLEMS, seed + 1000, "test")
    train = prm_examples(train_problems, _sampled(policy, tokenizer, train_problems, PRM_SAMPLES), seed)
    val = prm_examples(val_problems, _sampled(policy, tokenizer, val_problems, PRM_SAMPLES), seed + 500)
    heldout_sampled = _sampled(policy, tokenizer, heldout_problems, {0.8: 4})
    del policy
    encoded = [encode_example(tokenizer, e) for e in train]
    val_encoded = [encode_example(tokenizer, e) for e in val]
    pad = tokenizer.pad_token_id

    model = build_prm(tokenizer, seed) if PRM_INIT == "scratch" else prm_from_policy(reasoning_model_dir(seed))
    total, warmup, batch = PRM_MAX_STEPS, 50, 64
    opt = torch.optim.AdamW(model.parameters(), lr=PRM_LR, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    g = torch.Generator().manual_seed(seed)
    model.train()
    val_acc, step = 0.0, 0
    for step in range(1, total + 1):
        idx = torch.randint(len(encoded), (batch,), generator=g).tolist()
        bce, nll = prm_losses(model, *_batch([encoded[i] for i in idx], pad))
        (bce + PRM_LM_WEIGHT * nll).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % PRM_CHECK_EVERY == 0:
            val_acc = step_accuracy(step_probs(model, val_encoded, pad), val_encoded)
            if console is not None:
                console.print(
                    f"  prm step {step}: bce {bce.item():.3f} lm {nll.item():.3f} val step acc {val_acc:.3f} cpu {time.process_time() - started:.0f}s"
                )
            if val_acc >= PRM_TARGET:
                break
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    labels = [y for e in train for y in e["labels"]]
    return {
        "task": task.name,
        "seed": seed,
        "init": "reasoning policy + new one-logit head" if PRM_INIT == "policy" else "scratch",
        "shape": {k: getattr(model.config, k) for k in PRM_SHAPE},
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": step,
        "train_problems": len(train_problems),
        "train_traces": len(train),
        "train_sampled_traces": sum(e["source"] == "sampled" for e in train),
        "train_step_labels": len(labels),
        "train_good_step_share": round(sum(labels) / max(1, len(labels)), 4),
        "labels": "exact per-step labels (reasoning.step_labels), PRM800K-style; not Math-Shepherd Monte-Carlo",
        "val_step_accuracy": round(val_acc, 4),
        **discrimination(model, tokenizer, heldout_problems, heldout_sampled, seed + 1000),
        "cpu_seconds": round(time.process_time() - started, 1),
    }
