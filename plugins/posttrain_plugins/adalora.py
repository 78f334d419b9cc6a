"""AdaLoRA: SVD-shaped low-rank updates whose rank budget is reallocated across matrices during training.

Paper: Zhang, Chen, Bukharin, Karampatziakis, He, Cheng, Chen, Zhao, 2023, "AdaLoRA: Adaptive
Budget Allocation for Parameter-Efficient Fine-Tuning", arXiv:2303.10512 (ICLR 2023).
Catalog entry: catalog/methods/adalora.yaml.

    catalog run adalora
    catalog run adalora --model Qwen/Qwen2.5-0.5B --dataset sft.jsonl --set target_r=8

Each adapted matrix gets ΔW = P Λ Q (P: d×r, Λ diagonal, Q: r×k). Every ΔT steps between t_i
and T - t_f, the singular values with the lowest importance (sensitivity |w ∇w| smoothed by
EMAs with β1, β2, plus its uncertainty) are masked, so the total rank falls on a cubic schedule
from b(0) = r_init × matrices to b(T) = r_target × matrices, and rank moves to the matrices that
need it. P and Q are kept near-orthogonal by R(P, Q) = ||PᵀP − I||²_F + ||QQᵀ − I||²_F with
weight γ. Here: peft's ``AdaLoraConfig`` (the parameterisation and the budget scheduler), the
SFT recipe's loss plus ``γ R`` (``orthogonal_penalty`` below), and
``update_and_allocate(step)`` called after every optimizer step (before gradients are cleared;
via an optimizer step hook, since the shared loop owns the step). The final rank pattern is logged.

Deviations from the paper:
1. R(P, Q) is averaged over the adapted matrices (the paper sums it over all of them; peft also
   averages), so γ does not scale with model depth.
2. Schedule lengths are shares of the step budget (t_i = 10%, t_f = 30%) since the embedded run is
   short (paper: e.g. t_i = 8000, t_f = 50000 steps of 500K on MNLI); ΔT = 10 as in several of the
   paper's GLUE settings; learning rate 3e-3 (paper: 5e-4 to 1e-3), for the embedded model.
"""

from __future__ import annotations

import torch
from pydantic import Field

from posttrain import Plugin, RunContext, RunResult
from posttrain.errors import UserError
from posttrain.training.peft_methods import peft_policy
from posttrain.training.sft import SMOKE, SFTConfig, train_sft
from posttrain.training.trainer import TrainerCallback


class Config(SFTConfig):
    lora: bool = Field(True, description="AdaLoRA trains low-rank adapters (always on for this plugin).")
    init_r: int = Field(12, ge=1, description="Initial rank per matrix r (paper: b(0) = 1.5 × b(T)).")
    target_r: int = Field(8, ge=1, description="Average final rank per matrix, so b(T) = target_r × matrices.")
    lora_alpha: int = Field(16, ge=1, description="Scaling α of the update (peft's; the paper uses α = r).")
    lora_target_modules: list[str] | None = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Adapted matrices (paper: all of W_q, W_k, W_v, W_o, W_f1, W_f2).",
    )
    tinit_share: float = Field(0.1, ge=0, lt=1, description="Warm-up share t_i of the steps before pruning starts.")
    tfinal_share: float = Field(0.3, ge=0, lt=1, description="Final share t_f of the steps with the budget fixed.")
    delta_t: int = Field(10, ge=1, description="Steps ΔT between budget reallocations.")
    beta1: float = Field(0.85, ge=0, lt=1, description="EMA β1 of the sensitivity (paper: 0.85).")
    beta2: float = Field(0.85, ge=0, lt=1, description="EMA β2 of the uncertainty (paper: 0.85).")
    orth_reg_weight: float = Field(0.1, ge=0, description="γ, weight of the orthogonality regulariser (paper: 0.1).")
    max_steps: int = Field(200, ge=1, description="Optimizer steps (a short budget for the embedded model).")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (paper: 5e-4 to 1e-3).")


# --- the regulariser --------------------------------------------------------------------------


def orthogonal_penalty(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """R(P, Q) = ||PᵀP − I||²_F + ||QQᵀ − I||²_F for P (d×r) and Q (r×k) (paper eq. 4).

    Zero when P has orthonormal columns and Q orthonormal rows; P = Q = 0 gives 2r.
    """
    r = p.shape[1]
    eye = torch.eye(r, dtype=p.dtype, device=p.device)
    return ((p.T @ p - eye) ** 2).sum() + ((q @ q.T - eye) ** 2).sum()


def adalora_regularizer(model, weight: float):
    """() -> (γ · mean R(P, Q) over the adapted matrices, metrics) for peft's SVD layers."""
    pairs = [(m.lora_B[name], m.lora_A[name]) for m in model.modules() if hasattr(m, "lora_E") for name in m.lora_E]

    def penalty():
        value = torch.stack([orthogonal_penalty(p, q) for p, q in pairs]).mean()
        return weight * value, {"orthogonal_penalty": value.item()}

    return penalty


# --- run ------------------------------------------------------------------------------------


def adalora_config(cfg: Config):
    from peft import AdaLoraConfig

    tinit, tfinal = int(cfg.tinit_share * cfg.max_steps), int(cfg.tfinal_share * cfg.max_steps)
    if tinit + tfinal >= cfg.max_steps:
        raise UserError(f"--set tinit_share/tfinal_share: t_i + t_f must be fewer than max_steps ({cfg.max_steps})")
    return AdaLoraConfig(
        task_type="CAUSAL_LM",
        init_r=cfg.init_r,
        target_r=cfg.target_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=cfg.delta_t,
        beta1=cfg.beta1,
        beta2=cfg.beta2,
        orth_reg_weight=cfg.orth_reg_weight,
        total_step=cfg.max_steps,
    )


def rank_pattern(model) -> dict[str, int]:
    """Ranks left per adapted matrix after budget allocation (non-zero entries of Λ)."""
    return {
        name: int((m.lora_E[key] != 0).sum())
        for name, m in model.named_modules()
        if hasattr(m, "lora_E")
        for key in m.lora_E
    }


class BudgetAllocation(TrainerCallback):
    """AdaLoRA's rank allocation (Alg. 1): update_and_allocate uses the step's gradients, so it runs
    after AdamW's step and before the gradients are cleared."""

    def __init__(self, model) -> None:
        self.model = model

    def on_optimizer_step(self, trainer, step: int) -> None:
        self.model.base_model.update_and_allocate(step)


def run(cfg: Config, ctx: RunContext) -> RunResult:
    model, tokenizer = peft_policy(ctx, lambda model, tok: adalora_config(cfg), "adalora")
    result = train_sft(
        cfg,
        ctx,
        model,
        tokenizer,
        callbacks=[BudgetAllocation(model)],
        regularizer=adalora_regularizer(model, cfg.orth_reg_weight),
    )
    ranks = rank_pattern(model)
    result.metrics["final_rank_total"] = sum(ranks.values())
    ctx.log(cfg.max_steps, {"final_rank_total": sum(ranks.values())})
    return result


plugin = Plugin(
    id="adalora",
    config=Config,
    run=run,
    summary="AdaLoRA: SVD-form adapters with importance-based rank reallocation, trained with the SFT loss.",
    smoke=SMOKE,
)
