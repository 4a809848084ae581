"""harness.data.guest: layouts, labels, refusals with one clear sentence, hashing and the shipped sample."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from harness.data import guest
from harness.data.guest import GuestSetError, load_guest_set, resolve_guest_set, sample_guest_dir
from harness.data.preprocess import normalize_image, open_image

REPO = Path(__file__).resolve().parents[3]


def sample_file(label: int, k: int = 0) -> Path:
    return sorted((sample_guest_dir() / str(label)).glob("*.jpg"))[k]


def put(folder: Path, rel: str, src: Path) -> Path:
    dst = folder / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_sample_is_shipped_with_every_digit():
    s = load_guest_set(sample_guest_dir())
    assert s.images.shape == (len(s.labels), 1, 28, 28) and s.images.dtype == np.float32
    assert s.labels.dtype == np.int64 and not s.skipped
    assert np.bincount(s.labels, minlength=10).min() >= 5
    coms = np.array([ndimage.center_of_mass(x[0]) for x in s.images])
    assert np.abs(coms - 14).max() <= 0.5
    assert (sample_guest_dir() / "README.md").is_file()


def test_folder_per_label(tmp_path):
    put(tmp_path, "3/a.jpg", sample_file(3))
    put(tmp_path, "7/b.jpg", sample_file(7))
    put(tmp_path, "7/c.jpg", sample_file(7, 1))
    s = load_guest_set(tmp_path)
    assert s.files == ["3/a.jpg", "7/b.jpg", "7/c.jpg"]
    assert s.labels.tolist() == [3, 7, 7]
    assert s.source == "folder" and not s.skipped
    np.testing.assert_array_equal(s.images[1, 0], normalize_image(open_image(sample_file(7))))


def test_flat_prefix_and_labels_csv(tmp_path):
    put(tmp_path, "7_003.jpg", sample_file(7))
    put(tmp_path, "2-x.jpg", sample_file(2))
    put(tmp_path, "5.jpg", sample_file(5))
    put(tmp_path, "scan_0001.jpg", sample_file(9))
    (tmp_path / "labels.csv").write_text("file,label\nscan_0001.jpg,9\n")
    s = load_guest_set(tmp_path)
    assert dict(zip(s.files, s.labels.tolist(), strict=True)) == {"2-x.jpg": 2, "5.jpg": 5, "7_003.jpg": 7,
                                                                   "scan_0001.jpg": 9}


def test_unlabelled_unreadable_and_blank_files_are_skipped_with_a_reason(tmp_path):
    put(tmp_path, "4/ok.jpg", sample_file(4))
    put(tmp_path, "mystery.jpg", sample_file(6))
    (tmp_path / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    Image.new("L", (40, 40), 250).save(tmp_path / "4" / "blank.png")
    (tmp_path / "4" / "notes.txt").write_text("hello")
    (tmp_path / "labels.csv").write_text("gone.png,3\n")
    s = load_guest_set(tmp_path)
    assert s.files == ["4/ok.jpg"]
    reasons = dict(s.skipped)
    assert reasons["mystery.jpg"].startswith("no label")
    assert reasons["4/broken.png"].startswith("cannot read broken.png")
    assert reasons["4/blank.png"].startswith("no ink found")
    assert reasons["4/notes.txt"].startswith("not an image")
    assert reasons["gone.png"].startswith("listed in labels.csv but there is no such file")


def test_folder_that_is_not_a_digit_is_refused(tmp_path):
    put(tmp_path, "seven/a.jpg", sample_file(7))
    with pytest.raises(GuestSetError, match="label folder 'seven' is not a digit 0–9"):
        load_guest_set(tmp_path)


def test_same_picture_under_two_labels_is_refused_naming_both(tmp_path):
    put(tmp_path, "1/a.jpg", sample_file(1))
    put(tmp_path, "7/b.jpg", sample_file(1))
    with pytest.raises(GuestSetError, match=r"same image is labelled twice: 1/a\.jpg as 1 and 7/b\.jpg as 7"):
        load_guest_set(tmp_path)


def test_same_picture_twice_under_one_label_counts_once(tmp_path):
    put(tmp_path, "1/a.jpg", sample_file(1))
    put(tmp_path, "1/copy.jpg", sample_file(1))
    s = load_guest_set(tmp_path)
    assert s.files == ["1/a.jpg"] and s.skipped == [("1/copy.jpg", "duplicate of 1/a.jpg (same file content).")]


def test_bad_labels_csv_and_disagreeing_labels_are_refused(tmp_path):
    put(tmp_path, "3/a.jpg", sample_file(3))
    (tmp_path / "labels.csv").write_text("3/a.jpg,eight\n")
    with pytest.raises(GuestSetError, match="line 1 should be 'file,label'"):
        load_guest_set(tmp_path)
    (tmp_path / "labels.csv").write_text("3/a.jpg,8\n")
    with pytest.raises(GuestSetError, match="is in folder 3 but labels.csv says 8"):
        load_guest_set(tmp_path)


def test_missing_or_empty_folder_gives_an_empty_set(tmp_path):
    for folder in (tmp_path / "nope", tmp_path):
        s = load_guest_set(folder)
        assert s.images.shape == (0, 1, 28, 28) and s.labels.shape == (0,) and s.files == []


def test_content_hash_follows_images_labels_and_version(tmp_path, monkeypatch):
    put(tmp_path, "3/a.jpg", sample_file(3))
    first = load_guest_set(tmp_path).content_hash
    assert load_guest_set(tmp_path).content_hash == first
    monkeypatch.setattr(guest, "PREPROCESS_VERSION", "something-else")
    assert load_guest_set(tmp_path).content_hash != first
    monkeypatch.undo()
    (tmp_path / "3" / "a.jpg").rename(tmp_path / "3" / "b.jpg")
    assert load_guest_set(tmp_path).content_hash == first          # a rename changes nothing the models see
    shutil.move(tmp_path / "3", tmp_path / "5")
    assert load_guest_set(tmp_path).content_hash != first          # a label does


def test_resolve_uses_the_sample_until_real_digits_arrive(tmp_path):
    (tmp_path / "README.md").write_text("put digits here")
    shutil.copytree(sample_guest_dir() / "0", tmp_path / "_sample" / "0")
    s = resolve_guest_set(tmp_path)
    assert s.source == "sample" and len(s) == len(load_guest_set(sample_guest_dir()))
    put(tmp_path, "8/real.jpg", sample_file(8))
    s = resolve_guest_set(tmp_path)
    assert s.source == "folder" and s.files == ["8/real.jpg"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_real_guest_digits_are_git_ignored_but_readme_and_sample_are_not():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0
    assert ignored("mystery_digits/7/photo.jpg") and ignored("mystery_digits/labels.csv")
    assert not ignored("mystery_digits/README.md") and not ignored("mystery_digits/_sample/7/x.jpg")


def test_preview_shows_what_the_model_sees_and_lists_skipped_files(tmp_path):
    from harness.preview import main

    put(tmp_path / "g", "2/a.jpg", sample_file(2))
    Image.new("L", (30, 30), 255).save(tmp_path / "g" / "2" / "blank.png")
    assert main([str(tmp_path / "g"), "--out", str(tmp_path / "p")]) == 0
    overview = np.asarray(Image.open(tmp_path / "p" / "overview.png"), np.float32) / 255
    seen = normalize_image(open_image(sample_file(2)))
    first_tile = overview[24 + 6:24 + 6 + 56, 6:6 + 56]                  # below the title, 2× enlarged
    np.testing.assert_allclose(first_tile[::2, ::2], np.round(seen * 255) / 255, atol=1 / 255)
    assert (tmp_path / "p" / "pairs-1.png").is_file()
    assert "2/blank.png: no ink found" in (tmp_path / "p" / "skipped.txt").read_text()
