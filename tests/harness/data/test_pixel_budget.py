"""Pixel budgets: a picture with more pixels than a digit (or a sheet) may have is refused from its header, with one
sentence, before anything is decoded. A 169-megapixel PNG of 771 KB used to take 6 GB and 19 s and be read as a digit;
here the host's peak memory is measured from outside, in a child process, against a child that loads a normal
folder."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data import preprocess, sheet
from harness.data.preprocess import DIGIT_MAX_PIXELS, SHEET_MAX_PIXELS, ImageProblem, open_image
from leaderboard import drawing
from tests.conftest import REPO

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's, on opening
SIDE = 13_000  # 169 megapixels: under Pillow's own limit (179 MP), far over a digit's


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(path: Path, width: int = SIDE, height: int = SIDE) -> Path:
    """A valid, fully transparent RGBA PNG of width×height, written row by row (the test never holds it whole)."""
    row = b"\0" + bytes(4 * width)
    packer = zlib.compressobj(9)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)))
        for _ in range(height):
            data = packer.compress(row)
            if data:
                fh.write(_chunk(b"IDAT", data))
        fh.write(_chunk(b"IDAT", packer.flush()) + _chunk(b"IEND", b""))
    return path


def huge_float_tiff(path: Path, width: int = SIDE, height: int = SIDE, rows_per_strip: int = 256) -> Path:
    """A valid 32-bit float grayscale TIFF of width×height, deflate-compressed in strips (one strip compressed once
    and repeated: every strip is the same zeros)."""
    strips = -(-height // rows_per_strip)
    full = zlib.compress(bytes(4 * width * rows_per_strip), 9)
    last_rows = height - (strips - 1) * rows_per_strip
    last = zlib.compress(bytes(4 * width * last_rows), 9)
    tags = 11
    ifd_at = 8
    arrays_at = ifd_at + 2 + 12 * tags + 4
    offsets_at, counts_at = arrays_at, arrays_at + 4 * strips
    data_at = counts_at + 4 * strips
    sizes = [len(full)] * (strips - 1) + [len(last)]
    offsets = [data_at + sum(sizes[:i]) for i in range(strips)]

    def tag(code, kind, count, value):  # kind 3 = SHORT, 4 = LONG
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 and count == 1 else struct.pack("<I", value)
        return struct.pack("<HHI", code, kind, count) + packed

    ifd = struct.pack("<H", tags) + b"".join([
        tag(256, 4, 1, width), tag(257, 4, 1, height), tag(258, 3, 1, 32), tag(259, 3, 1, 8),  # deflate
        tag(262, 3, 1, 1), tag(273, 4, strips, offsets_at), tag(277, 3, 1, 1), tag(278, 4, 1, rows_per_strip),
        tag(279, 4, strips, counts_at), tag(284, 3, 1, 1), tag(339, 3, 1, 3),  # SampleFormat: IEEE float
    ]) + struct.pack("<I", 0)
    with open(path, "wb") as fh:
        fh.write(b"II*\0" + struct.pack("<I", ifd_at) + ifd)
        fh.write(struct.pack(f"<{strips}I", *offsets) + struct.pack(f"<{strips}I", *sizes))
        for i in range(strips):
            fh.write(full if i < strips - 1 else last)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    return {"png": huge_png(root / "7_huge.png"), "tiff": huge_float_tiff(root / "3_huge.tif")}


@pytest.mark.sandbox
def test_the_crafted_files_are_what_they_claim(bombs):
    """Reference: Pillow reads their headers as the sizes and modes the report measured (the decoding itself is
    what the budget avoids; a small crafted file decodes to exactly its zeros)."""
    assert bombs["png"].stat().st_size < 1_000_000 and bombs["tiff"].stat().st_size < 2_000_000
    with Image.open(bombs["png"]) as im:
        assert (im.size, im.mode, im.format) == ((SIDE, SIDE), "RGBA", "PNG")
    with Image.open(bombs["tiff"]) as im:
        assert (im.size, im.mode, im.format) == ((SIDE, SIDE), "F", "TIFF")
    small = Path(bombs["png"]).with_name("small.tif")
    huge_float_tiff(small, 40, 30, rows_per_strip=8)
    with Image.open(small) as im:
        assert im.size == (40, 30) and not np.asarray(im).any()
    small_png = huge_png(Path(bombs["png"]).with_name("small.png"), 40, 30)
    with Image.open(small_png) as im:
        assert im.size == (40, 30) and not np.asarray(im).any()


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", ["png", "tiff"])
def test_an_image_over_the_budget_is_refused_from_its_header_at_once(bombs, kind):
    start = time.perf_counter()
    with pytest.raises(ImageProblem) as caught:
        open_image(bombs[kind])
    assert time.perf_counter() - start < 1.0  # nothing decoded (it took 19 s)
    assert str(caught.value) == (f"{bombs[kind].name} is 13,000×13,000 pixels (169 megapixels), more than the 16 "
                                 "megapixels it may have; scale it down and save it again")


def test_the_budgets_sit_between_a_phone_photo_and_a_bomb():
    assert 4032 * 3024 <= DIGIT_MAX_PIXELS < SIDE * SIDE  # a 12-megapixel phone photo of one digit is read
    assert 8000 * 6000 <= SHEET_MAX_PIXELS < SIDE * SIDE  # a 48-megapixel photo of the sheet too
    assert preprocess.pixel_problem(4000, 4000, "x.png") is None
    assert preprocess.pixel_problem(4001, 4000, "x.png").startswith("x.png is 4,001×4,000 pixels (16 megapixels)")


@pytest.mark.slow
def test_the_sheet_import_has_its_own_larger_budget(tmp_path):
    photo = huge_png(tmp_path / "sheet.png", 8000, 7000)  # 56 MP: over the sheet's budget
    with pytest.raises(ImageProblem, match=r"sheet\.png is 8,000×7,000 pixels \(56 megapixels\), more than the 50 "):
        sheet.import_sheet(photo, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    within = huge_png(tmp_path / "within.png", 5000, 4000)  # 20 MP: over a digit's budget, within a sheet's
    with pytest.raises(ImageProblem):
        open_image(within)
    assert open_image(within, SHEET_MAX_PIXELS).size == (5000, 4000)


def test_a_drawing_over_the_budget_is_refused_before_the_pipeline():
    huge = np.broadcast_to(np.zeros(4, np.uint8), (5000, 5000, 4))  # what a hostile browser could send; no memory
    with pytest.raises(ImageProblem, match=r"^the drawing is 5,000×5,000 pixels \(25 megapixels\)"):
        drawing.normalise_drawing(huge)
    ink = np.full((280, 280, 4), 255, np.uint8)
    ink[100:180, 130:150, :3] = 0
    assert drawing.normalise_drawing(ink).shape == (28, 28)  # the real canvas's size is read as before


LOAD = textwrap.dedent("""
    import json, sys
    from harness.data.guest import load_guest_set
    s = load_guest_set(sys.argv[1])
    print(json.dumps({"files": s.files, "skipped": s.skipped}))
""")


def load_in_child(folder: Path, cache: Path) -> tuple[dict, float, float]:
    """load_guest_set(folder) in a fresh process: (what it found, its peak RSS in MB as the kernel accounts it to
    this process on its exit, seconds)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HARNESS_CACHE=str(cache))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", LOAD, str(folder)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, read from outside
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out), usage.ru_maxrss / 1024, time.perf_counter() - start


@pytest.mark.sandbox
def test_a_guest_folder_with_bombs_costs_no_more_memory_than_a_normal_one(bombs, tmp_path):
    from tests.harness.data.test_guest import put, sample_file
    normal, hostile = tmp_path / "normal", tmp_path / "hostile"
    for folder in (normal, hostile):
        for label in range(3):
            put(folder, f"{label}/digit.png", sample_file(label))
    (hostile / "7_huge.png").write_bytes(bombs["png"].read_bytes())
    (hostile / "3_huge.tif").write_bytes(bombs["tiff"].read_bytes())

    base, base_mb, _ = load_in_child(normal, tmp_path / "cache-a")
    found, peak_mb, seconds = load_in_child(hostile, tmp_path / "cache-b")
    assert found["files"] == base["files"] == ["0/digit.png", "1/digit.png", "2/digit.png"]
    assert dict(map(tuple, found["skipped"])) == {
        "3_huge.tif": "3_huge.tif is 13,000×13,000 pixels (169 megapixels), more than the 16 megapixels it may "
                      "have; scale it down and save it again",
        "7_huge.png": "7_huge.png is 13,000×13,000 pixels (169 megapixels), more than the 16 megapixels it may "
                      "have; scale it down and save it again"}
    assert peak_mb < base_mb + 200, (peak_mb, base_mb)  # it took 6.0 GB (PNG) and 3.9 GB (TIFF)
    assert seconds < 60
