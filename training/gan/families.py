"""The GAN family registry: everything the family-blind loop, checkpoints and sampling need.

A family is a frozen :class:`GanFamily`: its key, the ``origin`` its samples carry in a patch
set, the ``[gan]`` sub-table holding its config overrides, and factories (config, networks,
augment pipe, loss, Adam settings, sampler, multi-GPU scaling). The loop only ever calls these
factories and the loss's ``accumulate_gradients(phase, ...)``; it never names an architecture.
``stylegan2``, ``semantic`` (SemanticGAN, image + mask) and ``masked`` (a defect painted into a
real background inside a given mask) are registered here the same way.

Every family's config exposes the attributes listed in :class:`LoopConfig` (the loop reads
them); anything else in it is the family's own business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel
from torch import nn


class LoopConfig(Protocol):
    """What the loop reads from a family's config (one GPU's view, see ``GanFamily.for_gpus``)."""

    resolution: int
    img_channels: int
    z_dim: int
    batch_size: int
    g_reg_interval: int
    d_reg_interval: int
    ema_kimg: float
    ema_rampup: float | None
    augment_p: float
    ada_target: float | None
    ada_interval: int
    ada_kimg: float


@dataclass(frozen=True)
class GanFamily:
    """One registered GAN family (see the module docstring)."""

    key: str
    origin: str
    config_section: str
    presets: tuple[str, ...]
    config: Callable[..., BaseModel]  # config(preset, overrides) -> validated config
    parse_config: Callable[[Mapping[str, Any]], BaseModel]  # a saved config dict -> config
    build: Callable[[Any], tuple[nn.Module, nn.Module]]  # cfg -> fresh (G, D)
    augment: Callable[[Any], nn.Module | None]  # cfg -> ADA pipe (or None)
    loss: Callable[..., Any]  # loss(cfg, G, D, pipe) -> object with accumulate_gradients/state_dict
    optimizers: Callable[[Any], dict[str, dict]]  # cfg -> {"G": adam kwargs, "D": adam kwargs}
    sampler: Callable[..., nn.Module]  # sampler(G, psi=1.0, noise_mode="const") -> z -> image module
    for_gpus: Callable[[Any, int], Any]  # (cfg, gpus) -> per-GPU cfg under the 'auto' rules
    # load_data(patches, resolution=, pasted=, options=dict, seed=) -> GanData (options: the [gan] data fields)
    load_data: Callable[..., Any] | None = None  # None: training.gan.data.load_gan_data (defect images only)
    fit_config: Callable[[Any, Any], Any] | None = None  # (cfg, GanData) -> cfg with data-derived values filled in
    batches: Callable[..., Any] | None = None  # (loop input, device, rng) -> object with next(batch); None: images
    # (G_ema, batches, cfg) -> z -> grid module, for a family whose samples need conditions (backgrounds, masks)
    grid_sampler: Callable[..., nn.Module] | None = None


_REGISTRY: dict[str, GanFamily] = {}


def register(family: GanFamily) -> GanFamily:
    """Add ``family`` (a key registered twice is an error)."""
    if family.key in _REGISTRY:
        raise ValueError(f"GAN family {family.key!r} is already registered")
    _REGISTRY[family.key] = family
    return family


def family_keys() -> list[str]:
    return sorted(_REGISTRY)


def get_family(key: str) -> GanFamily:
    """The registered family ``key``; unknown keys list the valid ones."""
    if key not in _REGISTRY:
        raise KeyError(f"unknown GAN family {key!r}; valid: {family_keys()}")
    return _REGISTRY[key]


# --- stylegan2 ------------------------------------------------------------------------------


def auto_batch_for_gpus(batch_one_gpu: int, gpus: int) -> int:
    """Total batch for ``gpus`` under 'auto': gpus x (one GPU's batch), capped at max(64, it), >= gpus."""
    return max(gpus, min(gpus * batch_one_gpu, max(64, batch_one_gpu)))


def _stylegan2_family() -> GanFamily:
    from training.gan.stylegan2.build import adam_settings, build_augment_pipe, build_loss, build_networks
    from training.gan.stylegan2.config import PRESETS, StyleGAN2Config, preset
    from training.gan.stylegan2.networks import SamplingGenerator

    def config(name: str, overrides: Mapping[str, Any] | None = None) -> StyleGAN2Config:
        return preset(name, **dict(overrides or {}))

    def for_gpus(cfg: StyleGAN2Config, gpus: int) -> StyleGAN2Config:
        """'auto' multi-GPU rule: total batch capped at 64, γ ∝ 1/total batch, EMA ∝ total batch.

        ``cfg`` is the one-GPU config; with 1 GPU it comes back unchanged. Example (paper preset,
        2 GPUs): batch 32 per GPU (64 in all), γ 0.1024 -> 0.0512, EMA 10 -> 20 kimg.
        """
        if gpus <= 1:
            return cfg
        total = auto_batch_for_gpus(cfg.batch_size, gpus)
        scale = total / cfg.batch_size
        return cfg.model_copy(
            update={
                "batch_size": max(1, total // gpus),
                "r1_gamma": cfg.r1_gamma / scale,
                "ema_kimg": cfg.ema_kimg * scale,
            }
        )

    return GanFamily(
        key="stylegan2",
        origin="gan",
        config_section="stylegan2",
        presets=tuple(PRESETS),
        config=config,
        parse_config=lambda data: StyleGAN2Config(**dict(data)),
        build=build_networks,
        augment=lambda cfg: build_augment_pipe(cfg),
        loss=build_loss,
        optimizers=adam_settings,
        sampler=lambda G, psi=1.0, noise_mode="const": SamplingGenerator(G, psi=psi, noise_mode=noise_mode),
        for_gpus=for_gpus,
    )


register(_stylegan2_family())


# --- semantic (SemanticGAN) -----------------------------------------------------------------


def _semantic_family() -> GanFamily:
    from training.gan.semantic.build import adam_settings, build_augment_pipe, build_loss, build_networks
    from training.gan.semantic.config import PRESETS, SemanticGANConfig, preset
    from training.gan.semantic.data import defect_fraction_statistics, load_semantic_data
    from training.gan.semantic.networks import SemanticSampler
    from training.gan.semantic.reals import PairedBatches

    stylegan2 = get_family("stylegan2")

    def config(name: str, overrides: Mapping[str, Any] | None = None) -> SemanticGANConfig:
        return preset(name, **dict(overrides or {}))

    def for_gpus(cfg: SemanticGANConfig, gpus: int) -> SemanticGANConfig:
        """The image GAN's 'auto' rule for batch, γ (both discriminators) and EMA."""
        scaled = stylegan2.for_gpus(cfg, gpus)
        if gpus <= 1:
            return scaled
        scale = auto_batch_for_gpus(cfg.batch_size, gpus) / cfg.batch_size
        return scaled.model_copy(update={"sem_r1_gamma": cfg.sem_r1_gamma / scale})

    def load_data(patches, *, resolution: int, pasted=(), options: Mapping[str, Any] | None = None, seed: int = 0):
        return load_semantic_data(
            patches, resolution=resolution, pasted=tuple(pasted), seed=seed, **dict(options or {})
        )

    def fit_config(cfg: SemanticGANConfig, data: Any) -> SemanticGANConfig:
        """Fill the distribution loss's real statistics from the labelled masks (unless the config pins them)."""
        if cfg.label_channels != 1:
            raise ValueError(
                f"gan.semantic.label_channels = {cfg.label_channels}: the product's masks are binary (0 good, 255 "
                "defect), so the label branch has one channel; class-id masks need a dataset that declares classes"
            )
        if cfg.ld_real_mean is not None and cfg.ld_real_std is not None:
            return cfg
        means, stds = defect_fraction_statistics(data.pair_masks)
        return cfg.model_copy(update={"ld_real_mean": means, "ld_real_std": stds})

    return GanFamily(
        key="semantic",
        origin="semgan",
        config_section="semantic",
        presets=tuple(PRESETS),
        config=config,
        parse_config=lambda data: SemanticGANConfig(**dict(data)),
        build=build_networks,
        augment=lambda cfg: build_augment_pipe(cfg),
        loss=build_loss,
        optimizers=adam_settings,
        sampler=lambda G, psi=1.0, noise_mode="const": SemanticSampler(G, psi=psi, noise_mode=noise_mode),
        for_gpus=for_gpus,
        load_data=load_data,
        fit_config=fit_config,
        batches=PairedBatches,
    )


register(_semantic_family())


# --- masked (mask-guided defect generator) ----------------------------------------------------


def _masked_family() -> GanFamily:
    from training.gan.masked.build import adam_settings, build_loss, build_networks, grid_sampler
    from training.gan.masked.config import PRESETS, MaskedGANConfig, preset
    from training.gan.masked.data import load_masked_data
    from training.gan.masked.reals import MaskedBatches

    def config(name: str, overrides: Mapping[str, Any] | None = None) -> MaskedGANConfig:
        return preset(name, **dict(overrides or {}))

    def for_gpus(cfg: MaskedGANConfig, gpus: int) -> MaskedGANConfig:
        """Per-GPU batch unchanged (the total grows with the GPUs); EMA ∝ total batch."""
        return cfg if gpus <= 1 else cfg.model_copy(update={"ema_kimg": cfg.ema_kimg * gpus})

    def load_data(patches, *, resolution: int, pasted=(), options: Mapping[str, Any] | None = None, seed: int = 0):
        return load_masked_data(patches, resolution=resolution, pasted=tuple(pasted), options=dict(options or {}))

    def no_latent_only_sampler(G: nn.Module, psi: float = 1.0, noise_mode: str = "const") -> nn.Module:
        raise ValueError("the masked generator samples from backgrounds and masks, not from z alone: use `gan sample`")

    return GanFamily(
        key="masked",
        origin="masked",
        config_section="masked",
        presets=tuple(PRESETS),
        config=config,
        parse_config=lambda data: MaskedGANConfig(**dict(data)),
        build=build_networks,
        augment=lambda cfg: None,
        loss=build_loss,
        optimizers=adam_settings,
        sampler=no_latent_only_sampler,
        for_gpus=for_gpus,
        load_data=load_data,
        batches=MaskedBatches,
        grid_sampler=grid_sampler,
    )


register(_masked_family())
