"""Exportable models (plain ``nn.Module``s, no training code): classifier and segmenter."""
