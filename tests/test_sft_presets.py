"""The SFT presets' data handling: embedded formats, conversions of user records, loss masks."""

import pytest

from posttrain.answers import final_answer, final_answer_correct
from posttrain.embedded.formats import (
    HELDOUT_TEMPLATES,
    conversations,
    instruction_examples,
    last_turn_prompts,
    rationale,
    rationale_examples,
)
from posttrain.errors import UserError
from posttrain_plugins.completion_only_loss import full_sequence_mask, loss_token_share
from posttrain_plugins.cot_finetuning import with_rationale
from posttrain_plugins.dialogue_tuning import to_messages
from posttrain_plugins.instruction_tuning import to_prompt_completion


def test_rationale_hand_worked():
    assert rationale((47, 29)) == "16;7;#76"
    assert rationale((99, 99)) == "18;19;#198"
    assert rationale((5, 3)) == "8;#8"
    assert rationale((40, 7)) == "7;4;#47"


def test_final_answer_reads_after_the_last_mark():
    assert final_answer("16;7;#76") == "76"
    assert final_answer("76") == "76"
    assert final_answer("12;13;6;#632 junk 5") == "632"
    assert final_answer("16;7;#") is None
    assert final_answer("no number") is None
    assert final_answer_correct("16;7;#76", "76")
    assert not final_answer_correct("16;7;#75", "76")


def test_embedded_formats_keep_the_heldout_split():
    from posttrain.embedded.task import DEFAULT_TASK

    for record in rationale_examples(50, 0, "test"):
        a, b = map(int, record["prompt"].rstrip("=").split("+"))
        assert DEFAULT_TASK.is_heldout((a, b)) and record["completion"].endswith(f";#{a + b}")
    heldout = instruction_examples(40, 0, "test", style="alpaca")
    phrasings = {t.split("{")[0] for t in HELDOUT_TEMPLATES}
    assert all(any(p in r["prompt"] for p in phrasings) for r in heldout)
    assert all(
        r["prompt"].startswith("### Instruction:\n") and r["prompt"].endswith("### Response:\n") for r in heldout
    )
    chat = instruction_examples(40, 0, "test")
    assert all(len(r["prompt"]) == 1 and r["prompt"][0]["role"] == "user" for r in chat)
    assert all(any(r["prompt"][0]["content"].startswith(p) for p in phrasings) for r in chat)
    seen = instruction_examples(40, 0, "test", templates="seen")
    assert not any(any(r["prompt"][0]["content"].startswith(p) for p in phrasings) for r in seen)
    for r in seen:
        a, b = map(int, r["prompt"][0]["content"].rstrip(".?= ").split()[-1].split("+"))
        assert DEFAULT_TASK.is_heldout((a, b)) and r["answer"] == str(a + b)
    assert instruction_examples(1, 0, "train", style="flan")[0]["prompt"].endswith("\n")


def test_conversations_are_running_sums():
    (conv,) = conversations(1, 0, "train", turns=3)
    msgs = conv["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3
    a, b = map(int, msgs[0]["content"].rstrip("=").split("+"))
    total = a + b + int(msgs[2]["content"].split()[1]) + int(msgs[4]["content"].split()[1])
    assert msgs[-1]["content"] == str(total)
    (prompt,) = last_turn_prompts([conv])
    assert prompt["prompt"] == msgs[:-1] and prompt["answer"] == msgs[-1]["content"]


def test_dialogue_mask_covers_assistant_turns_only():
    from posttrain.data import tokenize_messages
    from posttrain.embedded.tokenizer import build_tokenizer

    tok = build_tokenizer()
    (conv,) = conversations(1, 3, "train", turns=2)
    out = tokenize_messages(conv, tok)
    masked = tok.decode([t for t, m in zip(out["input_ids"], out["completion_mask"], strict=True) if m])
    expected = "".join(m["content"] + "<|end|>" for m in conv["messages"] if m["role"] == "assistant")
    assert masked == expected


def test_alpaca_and_sharegpt_conversion():
    rec = to_prompt_completion({"instruction": "Add.", "input": "2 and 3", "output": "5"})
    assert rec["prompt"] == "### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n"
    assert rec["completion"] == "5"
    assert to_prompt_completion({"prompt": "p", "completion": "c"}) == {"prompt": "p", "completion": "c"}
    with pytest.raises(UserError, match="output"):
        to_prompt_completion({"instruction": "x", "_line": 3})
    msgs = to_messages({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
    assert msgs["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    with pytest.raises(UserError, match="speaker"):
        to_messages({"conversations": [{"from": "robot", "value": "x"}]})


def test_cot_record_joins_rationale_and_answer():
    rec = with_rationale({"prompt": "q", "rationale": "because", "answer": 4})
    assert rec == {"prompt": "q", "completion": "because;#4", "answer": "4"}
    with pytest.raises(UserError, match="rationale"):
        with_rationale({"prompt": "q"})


def test_cot_direct_ablation_keeps_problems_drops_rationale():
    from posttrain_plugins.cot_finetuning import answers_only

    recs = [{"prompt": "347+285=", "completion": "12;13;6;#632", "answer": "632"}]
    assert answers_only(recs) == [{"prompt": "347+285=", "completion": "632", "answer": "632"}]


def test_greedy_decode_without_cache_matches_generate_on_a_plain_model():
    import torch

    from posttrain.embedded.model import build_model
    from posttrain.embedded.tokenizer import build_tokenizer
    from posttrain.generation.decode import generate, greedy_full_forward

    tok = build_tokenizer()
    model = build_model(tok, seed=0)
    prompts = ["12+3=", "4+5=", "77+18=", "1+1="]
    torch.manual_seed(0)
    assert greedy_full_forward(model, tok, prompts, max_new_tokens=5) == generate(model, tok, prompts, max_new_tokens=5)


def test_completion_only_masks():
    assert full_sequence_mask([0, 0, 0, 1, 1]) == [0, 1, 1, 1, 1]
    examples = [{"completion_mask": [0, 0, 1, 1]}, {"completion_mask": [0, 1]}]
    assert loss_token_share(examples) == pytest.approx(3 / 6)
