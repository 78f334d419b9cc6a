"""Reinforcement learning: the group-RL and actor-critic/REINFORCE recipes and their losses.

No torch import here.
"""
