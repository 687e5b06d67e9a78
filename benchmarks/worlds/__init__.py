"""Held-out world generators for evaluation only (never used for training or tuning).

``othergen``: an independent flat-shaded town generator writing CVACT- or CVUSA-like
folders (see its module docstring).
"""
