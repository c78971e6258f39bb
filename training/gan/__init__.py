"""GAN families for defect-patch synthesis (StyleGAN2-ADA first, SemanticGAN later).

Family-blind building blocks live at this level (``ops``, ``resample``, ``modconv``,
``gridsample``, ``augment``, ``ema``); each family keeps its ``networks``, ``loss`` and
``config`` in its own sub-package (``training/gan/stylegan2``). Everything here is written
from the papers (StyleGAN2, arXiv 1912.04958; ADA, arXiv 2006.06676) and the team's notes in
``shared/design``; no code is taken from NVIDIA's repositories (non-commercial licence).

Short maths names (``G``, ``D``, ``z``, ``ws``) are allowed inside this package only.
"""
