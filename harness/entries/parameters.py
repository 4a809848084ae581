"""An entry's parameter count, read by the host from its files; never taken from the entry's own process.

**The rule.** The count covers every tensor of the entry's state, whatever its dtype (float, int, bool, complex),
except BatchNorm's running statistics (keys ending in ``BUFFER_SUFFIXES``). It is counted from what is stored, not
from the shapes the file claims: each distinct storage that at least one counted tensor uses is counted once, as
its bytes divided by the element size of its dtype (the smallest, if tensors of several dtypes share it). So a view,
a stride-0 (expanded) tensor or several keys sharing one storage count the values really stored, and weights kept
as another dtype's bit patterns (int32 for float32) count the same. Where a storage lives:

* ``weights.pt`` (torch.save's zip format): one zip member per storage, read by ``torch.load(weights_only=True,
  mmap=True)``, so the storages are mapped from the file, never read into memory.
* ``weights.safetensors``: one byte range per tensor (the format allows no sharing); counted from its header.
* ``model.pt2``: found as ``torch.export.load`` finds it (``torch/export/pt2_archive/_package.py``): the archive's
  root folder is its first member's, the program is ``models/model.json``, its weights config
  ``data/weights/model_weights_config.json`` and its constants config ``data/constants/model_constants_config.json``;
  each config entry's ``path_name`` is its storage, a member of ``data/weights/`` (``data/constants/``), whose
  size is its bytes. Parameters, buffers and tensor constants all count; nothing else in the archive is read.

A weight that bit-packs several values into one wider element (two float32 in an int64) still counts one per
element: the count can be no smaller than the bytes stored over the widest dtype (8 bytes; 16 for complex128).

**Bounded reading.** Nothing of the entry is imported or executed, and the host reads nothing it has not checked
first: a zip archive may hold at most ``MAX_MEMBERS`` members, no two with the same name, each unpacking to at most
``MAX_RATIO`` times its packed size; ``data.pkl`` and the ``.pt2`` configs (the only members read into memory) may
unpack to at most ``MAX_METADATA_BYTES`` (JSON is parsed by the C parser, which refuses nesting deeper than
Python's recursion limit); ``weights.pt``'s
members must be stored uncompressed (as torch.save writes them) so that mapping them reads nothing; a safetensors
header may take at most ``MAX_METADATA_BYTES``. A count that is negative or larger than the stored bytes is
refused. Whatever goes wrong, ``measure`` returns one sentence saying what and how to fix it, never an exception.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

from harness.contract import CODE_FILE, EXPORT_FILE
from harness.entries.discovery import EntryFolder, real_file, weights_file

BUFFER_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")
MAX_MEMBERS = 20_000                # zip members: torch.save writes one per storage, a .pt2 two per weight
MAX_RATIO = 100                     # a zip member may unpack to at most this many times its packed size
MAX_METADATA_BYTES = 4 * 2 ** 20    # a member read into memory (data.pkl, a .pt2 config, a safetensors header)
SAFETENSORS_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1,
                     "F6_E3M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8,
                     "I64": 8, "F64": 8, "C64": 8}
PT2_MODEL = "model"                 # the program torch.export.load returns
PT2_FIX = "save it again with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')"
PT_FIX = "save it again with torch.save(model.state_dict(), 'weights.pt')"


class Unreadable(Exception):
    """The entry's weights cannot be counted: the message is the one sentence the member reads."""


def _counted(name: str) -> bool:
    return not name.endswith(BUFFER_SUFFIXES)


def _storage_total(storages: dict, what: str, capacity: int, fix: str = PT_FIX) -> int:
    """Sum of bytes // element size over ``storages`` (key -> (bytes, element sizes)), checked against
    ``capacity``, the bytes the files can hold."""
    total = 0
    for key, (nbytes, sizes) in storages.items():
        size = min(sizes)
        if nbytes < 0 or size <= 0:
            raise Unreadable(f"{what} declares a storage of {nbytes} bytes for {key!r}, which cannot be; {fix}.")
        total += nbytes // size
    if total < 0 or total > capacity:
        raise Unreadable(f"{what} would hold {total:,} parameters but its files hold only {capacity:,} bytes, so "
                         f"the count cannot be true; {fix}.")
    return total


def from_state_dict(state: dict) -> int:
    """Parameters in a loaded ``state_dict``, by the module's rule (distinct storages of the counted tensors)."""
    import torch
    storages: dict = {}
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or not _counted(key):
            continue
        storage = tensor.untyped_storage()
        nbytes, sizes = storages.get(storage._cdata, (storage.nbytes(), set()))
        storages[storage._cdata] = (nbytes, sizes | {tensor.element_size()})
    return _storage_total(storages, "the state_dict", sum(n for n, _ in storages.values()))


def _open_zip(path: Path) -> zipfile.ZipFile:
    """``path`` as a zip archive whose directory has been checked against the limits (see the module docstring)."""
    name, size = path.name, path.stat().st_size
    with open(path, "rb") as fh:
        end = zipfile._EndRecData(fh)  # the end record alone, before zipfile builds an object per member
    if end is None:
        raise Unreadable(f"{name} is not a zip archive; {PT2_FIX if name.endswith('.pt2') else PT_FIX}.")
    if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS or end[zipfile._ECD_SIZE] > MAX_METADATA_BYTES:
        raise Unreadable(f"{name} holds {end[zipfile._ECD_ENTRIES_TOTAL]:,} files, more than the {MAX_MEMBERS:,} "
                         "the harness reads; save only the model's weights in it.")
    archive = zipfile.ZipFile(path)
    try:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise Unreadable(f"{name} holds two files with the same name, so what it loads is ambiguous; "
                             f"{PT2_FIX if name.endswith('.pt2') else PT_FIX}.")
        for info in infos:
            if info.file_size > MAX_RATIO * max(info.compress_size, 1) or info.file_size > MAX_RATIO * size:
                raise Unreadable(f"{name}'s member {info.filename} unpacks to {info.file_size:,} bytes from "
                                 f"{info.compress_size:,}, more than {MAX_RATIO} times its size; store the weights "
                                 "uncompressed as torch saves them.")
        return archive
    except BaseException:
        archive.close()
        raise


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    """A member read into memory, at most its declared size, which must be under MAX_METADATA_BYTES."""
    if info.file_size > MAX_METADATA_BYTES:
        raise Unreadable(f"{what} takes {info.file_size:,} bytes, more than the {MAX_METADATA_BYTES:,} the harness "
                         f"reads; {PT2_FIX if what.startswith(EXPORT_FILE) else PT_FIX}.")
    with archive.open(info) as fh:
        return fh.read(info.file_size)


def _root(archive: zipfile.ZipFile, what: str, fix: str) -> str:
    """The archive's root folder as torch's reader takes it (its first member's), with a slash."""
    names = archive.namelist()
    root = names[0].split("/")[0] + "/" if names and "/" in names[0] else None
    if root is None or not all(n.startswith(root) for n in names):
        raise Unreadable(f"{what} does not keep all its files in one folder as torch does; {fix}.")
    return root


def from_pt(path: Path) -> int:
    """Parameters in a ``torch.save`` file, whose storages must be stored members (mapped, never read)."""
    if not zipfile.is_zipfile(path):
        raise Unreadable(f"{path.name} is not in torch.save's zip format (an old legacy file, or not weights at "
                         f"all), which the harness cannot count safely; {PT_FIX}.")
    with _open_zip(path) as archive:
        root = _root(archive, path.name, PT_FIX)
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise Unreadable(f"{path.name}'s member {info.filename} is compressed, which torch.save never does; "
                                 f"{PT_FIX}.")
        pickle = archive.NameToInfo.get(root + "data.pkl")
        if pickle is None:
            raise Unreadable(f"{path.name} holds no data.pkl, so it is not a torch.save file; {PT_FIX}.")
        if pickle.file_size > MAX_METADATA_BYTES:
            raise Unreadable(f"{path.name}'s data.pkl takes {pickle.file_size:,} bytes, more than the "
                             f"{MAX_METADATA_BYTES:,} the harness reads; {PT_FIX}.")
    import torch

    from harness.entries.loading import EntryError, _unwrap_state_dict
    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    try:
        return from_state_dict(_unwrap_state_dict(obj, path))
    except EntryError as exc:
        raise Unreadable(str(exc)) from exc


def from_safetensors(path: Path) -> int:
    """Parameters in a safetensors file: its header's tensors (any dtype), checked against the file's bytes."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if length < 0 or length > min(MAX_METADATA_BYTES, size - 8):
            raise Unreadable(f"{path.name} has no readable safetensors header; save it again with "
                             "safetensors.torch.save_file(model.state_dict(), ...).")
        header = _json(fh.read(length), path.name)
    if not isinstance(header, dict):
        raise Unreadable(f"{path.name}'s header is not a table of tensors; save it again with "
                         "safetensors.torch.save_file(model.state_dict(), ...).")
    storages = {}
    for key, meta in header.items():
        if key == "__metadata__" or not _counted(key):
            continue
        try:
            begin, end = meta["data_offsets"]
            nbytes, itemsize = int(end) - int(begin), SAFETENSORS_BYTES[meta["dtype"]]
            shape_bytes = math.prod(int(n) for n in meta["shape"]) * itemsize
        except (TypeError, KeyError, ValueError) as exc:
            raise Unreadable(f"{path.name} describes tensor {key!r} in a way safetensors does not "
                             f"({type(exc).__name__}); save it again with safetensors.torch.save_file(...).") from exc
        if nbytes != shape_bytes or not 0 <= int(begin) <= int(end) <= size - 8 - length:
            raise Unreadable(f"{path.name}'s tensor {key!r} does not match the bytes stored for it; save it again "
                             "with safetensors.torch.save_file(model.state_dict(), ...).")
        storages[(int(begin), int(end))] = (nbytes, {itemsize})
    return _storage_total(storages, path.name, size, "save it again with "
                                                     "safetensors.torch.save_file(model.state_dict(), ...)")


def _json(data: bytes, what: str):
    """JSON from an entry's file (at most MAX_METADATA_BYTES): the C parser guards its own recursion, so JSON nested
    deeper than Python's recursion limit (about 1,000) is refused with a RecursionError turned into one sentence."""
    fix = PT2_FIX if what.startswith(EXPORT_FILE) else "save the file again with the library that wrote it"
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise Unreadable(f"{what} nests deeper than the harness reads; {fix}.") from exc
    except ValueError as exc:  # UnicodeDecodeError included
        raise Unreadable(f"{what} is not valid JSON ({str(exc).splitlines()[0][:80]}); {fix}.") from exc


def _dtype_sizes() -> dict[int, int]:
    """Element size of each dtype as a .pt2 config numbers it (torch's serialized ScalarType)."""
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE
    return {int(getattr(k, "value", k)): v.itemsize for k, v in _SERIALIZE_TO_TORCH_DTYPE.items()}


def _whole_numbers(value) -> bool:
    """A list of ``{"as_int": n}`` with n >= 0, as a .pt2 config writes sizes, strides and offsets."""
    return isinstance(value, list) and all(isinstance(v, dict) and type(v.get("as_int")) is int and v["as_int"] >= 0
                                           for v in value)


def _payloads(archive: zipfile.ZipFile, root: str, folder: str, config: str, storages: dict) -> None:
    """Add the storages a .pt2 payload config (weights or constants) names for counted keys to ``storages``."""
    what = f"{EXPORT_FILE}'s {config}"
    info = archive.NameToInfo.get(root + folder + config)
    if info is None:
        raise Unreadable(f"{EXPORT_FILE} has no {folder}{config}, which torch.export.load needs; {PT2_FIX}.")
    doc = _json(_read_member(archive, info, what), what)
    entries = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise Unreadable(f"{what} is not a table of weights; {PT2_FIX}.")
    sizes = _dtype_sizes()
    for key, meta in entries.items():
        if not _counted(key):
            continue
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            raise Unreadable(f"{what} describes {key!r} without a file name; {PT2_FIX}.")
        if meta.get("use_pickle"):
            raise Unreadable(f"{EXPORT_FILE} keeps {key!r} as a pickled object, which the harness cannot count; "
                             "export a model whose weights are plain tensors.")
        tensor_meta = meta.get("tensor_meta")
        dtype = tensor_meta.get("dtype") if isinstance(tensor_meta, dict) else None
        if not isinstance(dtype, int) or dtype not in sizes:
            raise Unreadable(f"{what} gives {key!r} no dtype torch knows; {PT2_FIX}.")
        layout = [tensor_meta.get("sizes"), tensor_meta.get("strides"), [tensor_meta.get("storage_offset")]]
        if not all(_whole_numbers(part) for part in layout):
            raise Unreadable(f"{what} gives {key!r} sizes, strides or an offset that are not lists of whole numbers "
                             f"as torch writes them; {PT2_FIX}.")
        name = folder + meta["path_name"]
        member = archive.NameToInfo.get(root + name)
        if member is None:
            raise Unreadable(f"{EXPORT_FILE} has no {name}, which its config names for {key!r}; {PT2_FIX}.")
        nbytes, known = storages.get(name, (member.file_size, set()))
        storages[name] = (nbytes, known | {sizes[dtype]})


def from_export(path: Path) -> int:
    """Parameters of a ``torch.export`` archive, from the configs torch.export.load reads (see the docstring)."""
    with _open_zip(path) as archive:
        root = _root(archive, EXPORT_FILE, PT2_FIX)
        if root + f"models/{PT2_MODEL}.json" not in archive.NameToInfo:
            raise Unreadable(f"{EXPORT_FILE} holds no models/{PT2_MODEL}.json (an archive from an older torch, or "
                             f"not an export at all); {PT2_FIX}.")
        storages: dict = {}
        _payloads(archive, root, "data/weights/", f"{PT2_MODEL}_weights_config.json", storages)
        _payloads(archive, root, "data/constants/", f"{PT2_MODEL}_constants_config.json", storages)
        capacity = sum(archive.NameToInfo[root + name].file_size for name in storages)
    return _storage_total(storages, EXPORT_FILE, capacity, PT2_FIX)


def measure(entry: EntryFolder) -> tuple[int | None, str | None]:
    """``(count, None)``, or ``(None, sentence)`` when the entry's weights cannot be counted (never raises).

    ``(None, None)`` when the entry has no weights file to count (its own load fails with the reason)."""
    weights = weights_file(entry.folder, entry.metadata)
    if weights is None:
        return None, None
    try:
        if real_file(entry.folder, CODE_FILE) is None:
            return from_export(weights), None
        return (from_safetensors(weights) if weights.suffix == ".safetensors" else from_pt(weights)), None
    except Unreadable as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever an entry's file makes a reader raise is that entry's failure
        fix = PT2_FIX if weights.name == EXPORT_FILE else PT_FIX
        return None, (f"the harness could not read {weights.name} to count its parameters ({type(exc).__name__}); "
                      f"{fix}.")


def count(entry: EntryFolder) -> int | None:
    """The entry's parameter count as the host reads it from its files (None when they cannot be counted)."""
    return measure(entry)[0]
