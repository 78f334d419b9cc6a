"""PPO's ``reward-model:PATH`` reward scores completions as the reward model was trained (with EOS)."""

from __future__ import annotations

import torch

from posttrain.embedded.model import base_model_dir
from posttrain.scoring.rewards import build_reward
from posttrain.scoring.scorers import load_reward_model, score


def test_reward_model_reward_matches_training_tokenization(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    source = base_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    prompts, completions = ["12+30=", "7+5=", "99+1="], ["42", "13", "100"]
    reward = build_reward(f"reward-model:{tmp_path}")
    got = torch.tensor(reward(prompts, completions, [{}] * 3))
    rm, rm_tok = load_reward_model(tmp_path)
    expected = score(rm, rm_tok, prompts, completions)
    assert torch.allclose(got, expected, atol=1e-5)
    # The head reads EOS: the score differs from the head at the last completion token.
    without_eos = rm(**rm_tok(["12+30=42"], return_tensors="pt", add_special_tokens=False)).logits[0, 0]
    assert not torch.isclose(expected[0], without_eos, atol=1e-4)
