"""SemanticGAN (Li et al., CVPR 2021) as the thesis modified it: image + defect-mask synthesis."""
