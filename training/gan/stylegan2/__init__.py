"""The StyleGAN2-ADA family: ``networks``, ``loss``, ``config``."""
