"""Configuration fields every trainer plugin shares (optimiser, schedule, LoRA, evaluation).

A plugin's ``Config`` subclasses ``TrainingConfig`` and redeclares a field to change its default
(with the paper's value and symbol in the description). No torch import here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate of AdamW.")
    max_steps: int = Field(100, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="Learning-rate decay after warmup.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    max_length: int = Field(512, ge=8, description="Truncate tokenized examples to this many tokens.")
    train_examples: int = Field(
        20000, ge=1, description="Examples drawn from the embedded task (ignored with --dataset)."
    )
    eval_examples: int = Field(500, ge=1, description="Held-out examples evaluated before and after training.")
    max_new_tokens: int | None = Field(
        None, ge=1, description="Tokens generated per held-out prompt (default 8 on the embedded task, else 128)."
    )
    log_every: int = Field(10, ge=1, description="Log metrics every N steps.")
    save_every: int = Field(100, ge=0, description="Checkpoint every N steps (0: only at the end).")
    lora: bool = Field(False, description="Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = Field(8, ge=1, description="LoRA rank r.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling alpha (the update is scaled by alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_target_modules: list[str] | None = Field(None, description="Module names to adapt (default: peft's choice).")
    parallel: Literal["auto", "none", "ddp", "fsdp"] = Field(
        "auto",
        description="Multi-process training under torchrun: ddp, fsdp (FSDP2 fully_shard), or auto (ddp when "
        "launched with more than one process, else none).",
    )
