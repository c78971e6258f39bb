"""Training loops (iteration-based, as the thesis) for the downstream models."""
