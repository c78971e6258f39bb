"""Methods: how an experiment arm's training data is made from the real split and the pools.

A method names an augmentation *origin* (``pasted``, ``gan``, ``semgan``, ``masked``) and/or
weighted sampling; :meth:`Method.assembly` turns it and a size into the arguments of
:func:`training.data.assemble.assemble_run`, the same call a single run makes. Pools are
patch sets passed as ``--pool NAME=DIR`` (:mod:`training.data.pools`; a name is its rows' origin
except SemanticGAN's variants ``ours`` and ``ours+ld``, pools of origin ``semgan``); the GAN
issues only register new methods here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    key: str
    description: str
    augment_origins: tuple[str, ...] = ()  # draw --augment-size patches from these pools, in equal parts
    weighted: bool = False  # oversample real defects to the share the pool would give
    compare_with: str | None = None  # a second reference arm for the verdict (the GAN rows: pasted)

    def assembly(self, size: int) -> dict:
        """``augment`` and ``weighted_size`` of :func:`~training.data.assemble.assemble_run` at ``size``.

        Several origins share ``size`` equally (the first takes the remainder): ``gan+pasted`` at
        2000 draws 1000 GAN and 1000 pasted patches, the thesis's "ours".
        """
        parts = len(self.augment_origins)
        augment = {
            origin: size // parts + (size % parts if index == 0 else 0)
            for index, origin in enumerate(self.augment_origins)
        }
        return {"augment": augment, "weighted_size": size if self.weighted else None}


METHODS: dict[str, Method] = {
    method.key: method
    for method in (
        Method("baseline", "real training patches, uniform batches"),
        Method("weighted", "real patches; defects oversampled to the share after adding the pool", weighted=True),
        Method("pasted", "real + defect-pasted patches (thesis §3.2.1)", augment_origins=("pasted",)),
        Method("gan", "real + StyleGAN2-ADA patches", augment_origins=("gan",), compare_with="pasted"),
        Method(
            "gan+pasted",
            "real + half StyleGAN2-ADA, half defect-pasted patches (the thesis's 'ours')",
            augment_origins=("gan", "pasted"),
            compare_with="pasted",
        ),
        Method(
            "semgan",
            "real + SemanticGAN image/mask pairs (original: D_sem's gradient stops at the image, no L_d)",
            augment_origins=("semgan",),
            compare_with="pasted",
        ),
        Method(
            "ours",
            "real + SemanticGAN pairs, D_sem's gradient reaching the image branch (thesis)",
            augment_origins=("ours",),
            compare_with="pasted",
        ),
        Method(
            "ours+ld",
            "real + SemanticGAN pairs, gradient to the image + distribution loss (thesis eq. 5)",
            augment_origins=("ours+ld",),
            compare_with="pasted",
        ),
        Method(
            "masked",
            "real + mask-guided generator patches: a defect painted into a real background's mask",
            augment_origins=("masked",),
            compare_with="pasted",
        ),
        Method(
            "masked+pasted",
            "real + half mask-guided generator, half defect-pasted patches",
            augment_origins=("masked", "pasted"),
            compare_with="pasted",
        ),
    )
}


def get_method(key: str) -> Method:
    if key not in METHODS:
        raise ValueError(f"unknown method {key!r}; choose from {sorted(METHODS)}")
    return METHODS[key]
