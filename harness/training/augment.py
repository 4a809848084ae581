"""Training-time augmentations from ``torchvision.transforms.v2``, applied to one ``[1, 28, 28]`` image at a time.

Augmentations change the training images only; anything the model needs at evaluation too (resizing,
cropping, normalisation) belongs to the model (see ``architectures.Preprocess``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2


@dataclass(frozen=True)
class AugmentConfig:
    names: tuple[str, ...] = ()
    degrees: float = 10.0                     # affine: rotation range, ± degrees
    translate: float = 0.1                    # affine: shift range, fraction of the side
    scale: tuple[float, float] = (0.9, 1.1)   # affine: zoom range
    shear: float = 0.0                        # affine: shear range, ± degrees
    elastic_alpha: float = 34.0               # elastic: displacement strength
    elastic_sigma: float = 4.0                # elastic: displacement smoothness
    crop_padding: int = 2                     # crop: pad, then crop 28×28 back at a random place
    erasing_p: float = 0.5                    # erasing: probability of blanking a rectangle


AUGMENTATIONS = {
    "affine": lambda c: v2.RandomAffine(degrees=c.degrees, translate=(c.translate, c.translate),
                                        scale=tuple(c.scale), shear=c.shear or None),
    "elastic": lambda c: v2.ElasticTransform(alpha=c.elastic_alpha, sigma=c.elastic_sigma),
    "crop": lambda c: v2.RandomCrop(28, padding=c.crop_padding),
    "erasing": lambda c: v2.RandomErasing(p=c.erasing_p, scale=(0.02, 0.15), value=0.0),
}


# The AugmentConfig fields each augmentation reads (recorded in entry.toml only when it is used).
KNOBS = {"affine": ("degrees", "translate", "scale", "shear"), "elastic": ("elastic_alpha", "elastic_sigma"),
         "crop": ("crop_padding",), "erasing": ("erasing_p",)}


def list_augmentations() -> list[str]:
    return list(AUGMENTATIONS)


def build_transform(config: AugmentConfig) -> v2.Compose | None:
    """The v2 pipeline for the named augmentations, in the order given; ``None`` when there are none."""
    unknown = [n for n in config.names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}")
    if not config.names:
        return None
    return v2.Compose([AUGMENTATIONS[n](config) for n in config.names])


def augment_batch(images: torch.Tensor, transform: v2.Compose | None) -> torch.Tensor:
    """Each image of ``[N, 1, 28, 28]`` through its own random draw of ``transform`` (v2 would share one per batch)."""
    if transform is None:
        return images
    return torch.stack([transform(image) for image in images]).clamp_(0.0, 1.0)
