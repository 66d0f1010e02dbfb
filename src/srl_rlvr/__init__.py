"""srl-rlvr: Supervised Reinforcement Learning (arXiv 2510.25992), then RLVR, for small LLMs."""

__version__ = "0.1.0"
