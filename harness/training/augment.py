"""Training-time augmentations: per-image ones from ``torchvision.transforms.v2`` (affine, elastic, crop, erasing),
and batched ones written for a stranger's handwriting (rotate, slant, aspect, warp, stroke, refit), which draw
their own random values per image but transform the whole ``[N, 1, 28, 28]`` batch in one resampling (any task's
``[N, C, H, W]`` as well, but for stroke and refit, which are for handwriting alone: :func:`not_applicable`).

Augmentations change the training images only; anything the model needs at evaluation too (resizing,
cropping, normalisation) belongs to the model (see ``architectures.Preprocess``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
    rotate: float = 10.0                      # rotate: ± degrees (batched)
    slant: float = 15.0                       # slant: lean of the vertical strokes, ± degrees (batched shear)
    aspect: float = 1.3                       # aspect: width/height multiplied by up to this factor or its inverse
    warp: float = 1.5                         # warp: smooth random displacement, typical size in pixels
    stroke: float = 1.0                       # stroke: pen width change, up to ± this many pixels per side


# name -> (the knobs, the images' height and width) -> the per-image transform
AUGMENTATIONS = {
    "affine": lambda c, side: v2.RandomAffine(degrees=c.degrees, translate=(c.translate, c.translate),
                                        scale=tuple(c.scale), shear=c.shear or None),
    "elastic": lambda c, side: v2.ElasticTransform(alpha=c.elastic_alpha, sigma=c.elastic_sigma),
    "crop": lambda c, side: v2.RandomCrop(side, padding=c.crop_padding),
    "erasing": lambda c, side: v2.RandomErasing(p=c.erasing_p, scale=(0.02, 0.15), value=0.0),
}


# The AugmentConfig fields each augmentation reads (recorded in entry.toml only when it is used).
KNOBS = {"affine": ("degrees", "translate", "scale", "shear"), "elastic": ("elastic_alpha", "elastic_sigma"),
         "crop": ("crop_padding",), "erasing": ("erasing_p",), "rotate": ("rotate",), "slant": ("slant",),
         "aspect": ("aspect",), "warp": ("warp",), "stroke": ("stroke",), "refit": ()}

# Batched: the geometric ones share one resampling; then the pen width; refit last (as the guest pipeline does).
GEOMETRIC = ("rotate", "slant", "aspect", "warp")
BATCHED = (*GEOMETRIC, "stroke", "refit")
HANDWRITING = ("stroke", "refit")  # for ink on a black background framed like MNIST: a digits task's alone
SIDE = 28
BOX = 20          # MNIST fits each digit's ink into 20×20 ...
CENTRE = 14.0     # ... and puts its centre of mass at pixel (14, 14)


def list_augmentations() -> list[str]:
    return [*AUGMENTATIONS, *BATCHED]


def _uniform(n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n) * (high - low) + low


def geometry(images: torch.Tensor, c: AugmentConfig, names: tuple[str, ...]) -> torch.Tensor:
    """Rotation, slant, aspect and a smooth warp, each drawn per image, applied in one bilinear resampling."""
    n = len(images)
    zero, one = torch.zeros(n), torch.ones(n)
    angle = torch.deg2rad(_uniform(n, -c.rotate, c.rotate)) if "rotate" in names else zero
    lean = torch.tan(torch.deg2rad(_uniform(n, -c.slant, c.slant))) if "slant" in names else zero
    stretch = torch.exp(_uniform(n, -math.log(c.aspect), math.log(c.aspect))) if "aspect" in names else one
    # Output -> input coordinates (what affine_grid wants): the draws are symmetric, so sampling the inverse
    # transform's parameters directly gives the same distribution as inverting a forward one.
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = stretch.sqrt(), 1 / stretch.sqrt()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, (-sin + lean * cos) * sx
    theta[:, 1, 0], theta[:, 1, 1] = sin * sy, (cos + lean * sin) * sy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    if "warp" in names:
        height, width = images.shape[-2:]
        # c.warp pixels in [-1, 1] coordinates: 2 / side per pixel, along x (the width) and y (the height)
        per_pixel = 2 / SIDE if (height, width) == (SIDE, SIDE) else \
            torch.tensor([2 / width, 2 / height]).view(1, 2, 1, 1)
        coarse = torch.randn(n, 2, 4, 4) * (c.warp * per_pixel)
        grid = grid + F.interpolate(coarse, size=(height, width), mode="bicubic",
                                    align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def stroke(images: torch.Tensor, width: float) -> torch.Tensor:
    """Thicker or thinner pen per image, ``w`` drawn in ``[-width, width]``: a positive ``w`` blends towards a 3×3
    dilation (a whole one at 1, two at 2); a negative one raises the ink threshold of the anti-aliased edge, which
    thins a stroke by up to about half a pixel per side without breaking it (a 3×3 erosion would erase MNIST's
    two-pixel strokes)."""
    w = _uniform(len(images), -width, width).view(-1, 1, 1, 1)
    thick = F.max_pool2d(images, 3, 1, 1)
    thicker = F.max_pool2d(thick, 3, 1, 1)
    grown = torch.where(w <= 1, images + w.clamp(0, 1) * (thick - images),
                        thick + (w - 1).clamp(0, 1) * (thicker - thick))
    cut = 0.6 * (-w).clamp(0, 1)
    thinned = ((images - cut) / (1 - cut)).clamp(0, 1)
    return torch.where(w >= 0, grown, thinned)


def refit(images: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """Each digit's ink box scaled to fit 20×20 and its centre of mass moved to (14, 14): what the guest pipeline does
    to every guest digit, so that an augmented training digit is framed like the digits it will be read against."""
    n = len(images)
    ink = images[:, 0] > threshold
    rows, cols = ink.any(dim=2), ink.any(dim=1)
    idx = torch.arange(SIDE, dtype=images.dtype)
    has = rows.any(dim=1)
    top = torch.where(rows, idx, SIDE).amin(dim=1)
    bottom = torch.where(rows, idx, -1).amax(dim=1)
    left = torch.where(cols, idx, SIDE).amin(dim=1)
    right = torch.where(cols, idx, -1).amax(dim=1)
    side = torch.maximum(bottom - top + 1, right - left + 1).clamp(min=1)
    scale = torch.where(has, BOX / side, torch.ones(n))          # output pixels per input pixel
    mass = images[:, 0].sum(dim=(1, 2)).clamp(min=1e-6)
    cy = (images[:, 0].sum(dim=2) * idx).sum(dim=1) / mass
    cx = (images[:, 0].sum(dim=1) * idx).sum(dim=1) / mass
    def to_norm(p):  # pixel centre -> [-1, 1] (align_corners=False)
        return (2 * p + 1) / SIDE - 1

    offset = to_norm(torch.tensor(CENTRE))
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, 0, 2] = torch.where(has, to_norm(cx) - offset / scale, torch.zeros(n))
    theta[:, 1, 2] = torch.where(has, to_norm(cy) - offset / scale, torch.zeros(n))
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def not_applicable(names: tuple[str, ...], task_name: str | None) -> str | None:
    """The sentence refusing the handwriting augmentations (:data:`HANDWRITING`) on a task that is not handwriting on
    paper (``task_name``: such a task's name; None for a digits task, where every augmentation applies)."""
    asked = [n for n in names if n in HANDWRITING]
    if not asked or task_name is None:
        return None
    return (f"--augment {' '.join(asked)} {'is' if len(asked) == 1 else 'are'} for handwritten digits (ink on black, "
            f"framed like MNIST) and cannot apply to {task_name!r}; drop {'it' if len(asked) == 1 else 'them'} and use "
            "affine, crop, erasing, elastic, rotate, slant, aspect or warp.")


def build_transform(config: AugmentConfig, side: tuple[int, int] = (SIDE, SIDE)
                    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The named augmentations as one function on a batch ``[N, C, H, W]`` (``side``: H and W; the MNIST
    warm-up's ``[N, 1, 28, 28]`` by default); ``None`` when there are none.

    Per-image (v2) ones run first, in the order given, each image with its own draw (v2 would share one per
    batch); then the batched ones in a fixed order: geometry, stroke, refit.
    """
    unknown = [n for n in config.names if n not in AUGMENTATIONS and n not in BATCHED]
    if unknown:
        raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(list_augmentations())}")
    if not config.names:
        return None
    per_image = [AUGMENTATIONS[n](config, tuple(side)) for n in config.names if n in AUGMENTATIONS]
    pipeline = v2.Compose(per_image) if per_image else None
    names = tuple(config.names)

    def transform(images: torch.Tensor) -> torch.Tensor:
        if pipeline is not None:
            images = torch.stack([pipeline(image) for image in images])
        if any(n in GEOMETRIC for n in names):
            images = geometry(images, config, names)
        if "stroke" in names:
            images = stroke(images, config.stroke)
        if "refit" in names:
            images = refit(images.clamp(0.0, 1.0))
        return images.clamp_(0.0, 1.0)
    return transform


def augment_batch(images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """The batch through ``transform`` (each image with its own random draw); unchanged when there is none."""
    if transform is None:
        return images
    return transform(images)
