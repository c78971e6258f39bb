"""Methods: how an experiment arm's training data is made from the real split and the pools.

A method names an augmentation *origin* (``pasted``, later ``gan``, ``semgan``) and/or
weighted sampling; :meth:`Method.assembly` turns it and a size into the arguments of
:func:`training.data.assemble.assemble_run`, the same call a single run makes. Pools are
patch sets of that origin passed as ``--pool ORIGIN=DIR`` (:mod:`training.data.pools`); the
GAN issue only registers new methods here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    key: str
    description: str
    augment_origin: str | None = None  # draw --augment-size patches from this pool
    weighted: bool = False  # oversample real defects to the share the pool would give

    def assembly(self, size: int) -> dict:
        """``augment`` and ``weighted_size`` of :func:`~training.data.assemble.assemble_run` at ``size``."""
        return {
            "augment": {self.augment_origin: size} if self.augment_origin else {},
            "weighted_size": size if self.weighted else None,
        }


METHODS: dict[str, Method] = {
    method.key: method
    for method in (
        Method("baseline", "real training patches, uniform batches"),
        Method("weighted", "real patches; defects oversampled to the share after adding the pool", weighted=True),
        Method("pasted", "real + defect-pasted patches (thesis §3.2.1)", augment_origin="pasted"),
        Method("gan", "real + StyleGAN2-ADA patches", augment_origin="gan"),
        Method("semgan", "real + SemanticGAN image/mask pairs", augment_origin="semgan"),
    )
}


def get_method(key: str) -> Method:
    if key not in METHODS:
        raise ValueError(f"unknown method {key!r}; choose from {sorted(METHODS)}")
    return METHODS[key]
