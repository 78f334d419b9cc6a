"""Training: the Trainer a recipe drives, and one recipe per family (SFT, pairwise preference).

No torch import here: ``catalog list/show/validate`` import parts of ``posttrain`` and stay light.
"""
