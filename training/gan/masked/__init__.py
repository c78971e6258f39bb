"""Mask-guided defect generator (family ``masked``): learned pasting that keeps the real background."""
