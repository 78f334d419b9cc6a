"""The embedded default: a tiny model, tokenizer and arithmetic task built in code, offline.

`catalog run <id>` with no --model/--dataset uses these, so every method runs on a fresh machine
with no downloads.
"""
