"""harness.data.preprocess against independent references: scipy's centre of mass, the 20×20 box, the
original MNIST digit behind a simulated photo, and the same digit in other polarities/formats."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from harness.data.photo_sim import photograph
from harness.data.preprocess import ImageProblem, normalize_image, open_image
from tests.conftest import SEMEION, mnist_folder, needs_mnist, needs_semeion

MNIST = mnist_folder()


def semeion_files(per_digit: int = 3) -> list[Path]:
    return [f for d in range(10) for f in sorted((SEMEION / str(d)).glob("*.png"))[:per_digit]]


def mnist_test(n: int) -> np.ndarray:
    with gzip.open(MNIST / "t10k-images-idx3-ubyte.gz", "rb") as f:
        data = f.read(16 + 784 * n)
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, 28, 28).astype(np.float32) / 255


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def drawn_digit(width: int = 12, size: int = 200, ink: int = 0, paper: int = 255, mode: str = "L") -> Image.Image:
    """A hand-drawn-looking '4' as polylines (no dataset needed)."""
    img = Image.new(mode, (size, size), paper)
    d = ImageDraw.Draw(img)
    s = size / 200
    d.line([(120 * s, 30 * s), (50 * s, 130 * s), (150 * s, 130 * s)], fill=ink, width=max(1, round(width * s)),
           joint="curve")
    d.line([(118 * s, 80 * s), (115 * s, 175 * s)], fill=ink, width=max(1, round(width * s)))
    return img


def ink_bbox(x: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(x > 0)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


@needs_semeion
def test_semeion_output_follows_mnist_conventions():
    for f in semeion_files():
        x = normalize_image(Image.open(f))
        assert x.shape == (28, 28) and x.dtype == np.float32
        assert x.min() >= 0 and x.max() == pytest.approx(1.0)
        cy, cx = ndimage.center_of_mass(x)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, f.name
        h, w = ink_bbox(x)
        assert max(h, w) == 20 and min(h, w) <= 20, f.name
        assert x[0].max() == 0 and x[:, 0].max() == 0   # background is exactly black, as in MNIST


@needs_semeion
def test_polarity_does_not_matter():
    for f in semeion_files(1):
        img = Image.open(f).convert("L")
        inverted = Image.fromarray(255 - np.asarray(img))
        np.testing.assert_allclose(normalize_image(img), normalize_image(inverted), atol=1e-6)


@needs_mnist
def test_mnist_digit_comes_back_close_to_itself():
    originals = mnist_test(40)
    same = [corr(normalize_image(Image.fromarray((x * 255).astype(np.uint8))), x) for x in originals]
    assert np.mean(same) > 0.85, np.mean(same)


@needs_mnist
def test_photographed_mnist_digit_comes_back_close_to_the_original():
    rng = np.random.default_rng(1)
    originals = mnist_test(40)
    scores = [corr(normalize_image(photograph(x, rng)), x) for x in originals]
    assert np.mean(scores) > 0.8, np.mean(scores)
    assert min(scores) > 0.5


def test_canvas_drawings_in_either_colour_give_the_same_digit():
    black_on_white = normalize_image(drawn_digit(ink=0, paper=255))
    rgba_black = drawn_digit(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    rgba_white = drawn_digit(ink=(255, 255, 255, 255), paper=(255, 255, 255, 0), mode="RGBA")
    for img in (rgba_black, rgba_white):
        assert corr(normalize_image(img), black_on_white) > 0.99


def pen_width(x: np.ndarray) -> float:
    """Pen width of a 28×28 digit: ink area over the length of its centre line (area / half perimeter)."""
    ink = x > 0.5
    edge = ink & ~ndimage.binary_erosion(ink)
    return float(2 * ink.sum() / max(edge.sum(), 1))


@needs_mnist
def test_pen_width_is_brought_into_mnists_range():
    widths = [pen_width(x) for x in mnist_test(300)]
    lo, hi = np.percentile(widths, [5, 95])
    for width in (2, 3, 22, 30):
        x = normalize_image(drawn_digit(width=width))
        assert lo <= pen_width(x) <= hi, (width, pen_width(x), lo, hi)
    assert corr(normalize_image(drawn_digit(width=2)), normalize_image(drawn_digit(width=30))) > 0.75


def test_one_pixel_strokes_survive_a_large_image():
    x = normalize_image(drawn_digit(width=1, size=1000))
    assert x.max() == pytest.approx(1.0) and (x > 0.5).sum() >= 25
    assert corr(x, normalize_image(drawn_digit(width=12))) > 0.8


def test_specks_are_removed():
    clean = drawn_digit(size=300)
    specked = clean.copy()
    d = ImageDraw.Draw(specked)
    for x, y in [(10, 10), (280, 20), (15, 280), (270, 260), (150, 290), (290, 150)]:
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=0)
    assert corr(normalize_image(specked), normalize_image(clean)) > 0.97


def test_uneven_lighting_and_shadow_are_removed():
    base = np.asarray(drawn_digit(size=300), np.float32) / 255
    yy, xx = np.mgrid[0:300, 0:300] / 300
    shade = np.where(xx + 0.3 * yy > 0.6, 0.45, 1.0) * (0.6 + 0.4 * yy)   # a shadow edge and a gradient
    shade = ndimage.gaussian_filter(shade, 6)
    shaded = Image.fromarray(np.round(base * 230 * shade).astype(np.uint8))
    assert corr(normalize_image(shaded), normalize_image(drawn_digit(size=300))) > 0.95


def test_large_photo_is_fast_and_same_digit():
    small = drawn_digit(size=200)
    big = Image.new("RGB", (4000, 3000), (235, 232, 225))
    big.paste(drawn_digit(size=1600).convert("RGB"), (1200, 700))
    start = time.perf_counter()
    x = normalize_image(big)
    assert time.perf_counter() - start < 3
    assert corr(x, normalize_image(small)) > 0.95


def test_open_image_applies_exif_rotation(tmp_path):
    upright = drawn_digit()
    stored = upright.rotate(90, expand=True)            # the sensor's orientation; EXIF 6 = rotate back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.convert("RGB").save(tmp_path / "phone.jpg", exif=exif, quality=95)
    x = normalize_image(open_image(tmp_path / "phone.jpg"))
    assert corr(x, normalize_image(upright)) > 0.95


def test_open_image_reads_16_bit_and_alpha(tmp_path):
    ref = normalize_image(drawn_digit())
    sixteen = Image.fromarray((np.asarray(drawn_digit(), np.uint16) * 257).astype(np.uint16))
    sixteen.save(tmp_path / "d16.png")
    assert Image.open(tmp_path / "d16.png").mode.startswith("I")
    drawn_digit(ink=(20, 20, 20, 255), paper=(0, 0, 0, 0), mode="RGBA").save(tmp_path / "alpha.png")
    drawn_digit().save(tmp_path / "d.tiff")
    drawn_digit().save(tmp_path / "d.webp", quality=90)
    drawn_digit().save(tmp_path / "d.bmp")
    for name in ("d16.png", "alpha.png", "d.tiff", "d.webp", "d.bmp"):
        img = open_image(tmp_path / name)
        assert img.mode == "L"
        assert corr(normalize_image(img), ref) > 0.98, name


def test_truncated_and_non_image_files_say_so(tmp_path):
    data = io.BytesIO()
    drawn_digit().save(data, format="PNG")
    (tmp_path / "cut.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (tmp_path / "notes.jpg").write_text("not a picture")
    (tmp_path / "zero.png").write_bytes(b"")
    for name in ("cut.png", "notes.jpg", "zero.png"):
        with pytest.raises(ImageProblem, match=rf"cannot read {name}: .*re-save it as PNG or JPEG"):
            open_image(tmp_path / name)


def test_empty_and_blank_images_say_so():
    with pytest.raises(ImageProblem, match="empty image"):
        normalize_image(Image.new("L", (0, 0)))
    with pytest.raises(ImageProblem, match="no ink found"):
        normalize_image(Image.new("L", (64, 64), 255))
    blank_photo = photograph(np.zeros((16, 16), np.float32), np.random.default_rng(0))
    with pytest.raises(ImageProblem, match="no ink found"):
        normalize_image(blank_photo)
    with pytest.raises(ImageProblem, match="no ink found"):
        normalize_image(Image.new("RGBA", (50, 50), (0, 0, 0, 0)))


@pytest.mark.slow
@needs_semeion
def test_reference_model_reads_normalised_semeion_digits():
    """Fidelity regression on every 4th Semeion digit with the benchmark's fixed reference CNN
    (benchmarks/guest_fidelity.py has the full figures)."""
    weights = Path(__file__).resolve().parents[3] / "benchmarks" / "reference_cnn.pt"
    if not weights.is_file():
        pytest.skip(f"reference weights not cached at {weights} (run benchmarks/reference_cnn.py)")
    import importlib.util
    spec = importlib.util.spec_from_file_location("reference_cnn", weights.with_name("reference_cnn.py"))
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    model = ref.load_or_train(weights)
    files = sorted(SEMEION.glob("[0-9]/*.png"))[::4]
    labels = np.array([int(f.parent.name) for f in files])
    naive = np.stack([1 - np.asarray(Image.open(f).convert("L").resize((28, 28), Image.BILINEAR), np.float32) / 255
                      for f in files])
    ours = np.stack([normalize_image(Image.open(f)) for f in files])
    assert (ref.predict(model, naive) == labels).mean() < 0.5
    assert (ref.predict(model, ours) == labels).mean() >= 0.9
