"""Read raw rows from files, folders and Hugging Face dataset ids, each tagged with its location.

A row is whatever one line / element of the source holds (normally a dict of columns). Every row
carries a location string so that later errors can point at it:

- ``.jsonl`` / ``.jsonl.gz`` / ``.csv`` / ``.csv.gz``: ``path:LINE`` (1-based line in the file; for
  CSV the header is line 1 and a quoted multi-line cell reports the line where its row starts);
- ``.json`` / ``.json.gz`` (a list, or ``{"data": [...]}``) and ``.parquet``: ``path:#INDEX``
  (0-based position, ``#`` marks an index rather than a line); a ``.json`` file that holds JSON
  Lines (one object per line) is read as jsonl;
- dataset ids and folders written by ``Dataset.save_to_disk``: ``id[split]:#INDEX``.

Reading never stops at a bad row: a jsonl line that is not valid JSON (or not UTF-8 text) becomes a
:class:`RawRow` with ``error`` set, and the adapters turn it into an ``unreadable_row`` validation
issue. Only problems with the source as a whole (missing file, unknown extension, a ``.json`` file
that does not parse, a ``.json``/``.csv`` file that is not UTF-8, a damaged ``.gz`` or ``.parquet``
file) raise :class:`DataFormatError`, naming the file (and the line where there is one). Blank lines
of a jsonl file are not rows and are skipped.

Folders: ``{split}.{ext}`` or shards ``{split}-*.{ext}`` in the folder or its ``data/`` subfolder
(the Hugging Face repository layout) are read; with no split asked for, the folder's only split is
used, else ``train``. Dataset ids go through ``datasets.load_dataset``; an id with more than two
segments names a sub-folder of the repository (``Anthropic/hh-rlhf/harmless-base`` loads
``Anthropic/hh-rlhf`` with ``data_dir="harmless-base"``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXTENSIONS = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".csv.gz", ".parquet")
_ID_PATTERN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?$")


class DataFormatError(ValueError):
    """A data source as a whole cannot be read (missing, unknown format, unparseable file)."""


@dataclass
class RawRow:
    location: str  # "path:LINE", "path:#INDEX" or "id[split]:#INDEX"
    row: Any  # the parsed row (normally a dict); None when it could not be parsed
    error: str = ""  # why the row could not be parsed ("" = fine)


def read_rows(path: str, split: str = "", limit: int = 0) -> list[RawRow]:
    """All rows of a file, folder or dataset id (at most ``limit`` when > 0)."""
    local = Path(path)
    if local.is_file():
        return read_file(local, limit)
    if local.is_dir():
        return _read_folder(local, split, limit)
    if is_dataset_id(path):
        return _read_dataset_id(path, split, limit)
    raise DataFormatError(f"{path}: no such file or folder (and not a Hugging Face dataset id)")


def is_dataset_id(path: str) -> bool:
    """``owner/name`` (optionally ``/sub/folder``) that does not exist locally and is not a file name."""
    if Path(path).exists() or not _ID_PATTERN.match(path):
        return False
    return not path.endswith(EXTENSIONS)


def read_file(path: Path, limit: int = 0) -> list[RawRow]:
    try:
        return _read_file(path, limit)
    except (OSError, EOFError, zlib.error) as error:  # unreadable, or a cut / damaged .gz file
        raise DataFormatError(f"{path}: cannot read the file ({type(error).__name__}: {error})") from None
    except DataFormatError:
        raise
    except Exception as error:  # a damaged .parquet file (pyarrow's own errors)
        if path.name.endswith(".parquet"):
            raise DataFormatError(f"{path}: not a readable parquet file ({error})") from None
        raise


def _read_file(path: Path, limit: int) -> list[RawRow]:
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz")):
        rows = _read_jsonl(path, limit)
    elif name.endswith((".json", ".json.gz")):
        rows = _read_json(path)
    elif name.endswith((".csv", ".csv.gz")):
        rows = _read_csv(path, limit)
    elif name.endswith(".parquet"):
        rows = _read_parquet(path)
    else:
        raise DataFormatError(f"{path}: unknown file type (supported: {', '.join(EXTENSIONS)})")
    return rows[:limit] if limit else rows


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _not_utf8(data: bytes, error: UnicodeDecodeError) -> str:
    column = error.start - data.rfind(b"\n", 0, error.start)
    return f"not UTF-8 text (byte 0x{data[error.start]:02x} at column {column})"


def _open_text(path: Path) -> io.StringIO:
    """The whole file as text; a byte that is not UTF-8 is a :class:`DataFormatError` naming its line."""
    with _open_bytes(path) as handle:
        data = handle.read()
    try:
        return io.StringIO(data.decode("utf-8"), newline="")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataFormatError(f"{path}:{line}: {_not_utf8(data, error)}") from None


def _read_jsonl(path: Path, limit: int) -> list[RawRow]:
    rows = []
    with _open_bytes(path) as handle:
        for number, raw in enumerate(handle, start=1):
            location = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                rows.append(RawRow(location, None, _not_utf8(raw, error)))
                continue
            if not line.strip():
                continue
            try:
                rows.append(RawRow(location, json.loads(line)))
            except json.JSONDecodeError as error:
                rows.append(RawRow(location, None, f"invalid JSON ({error.msg} at column {error.colno})"))
            except RecursionError:
                rows.append(RawRow(location, None, "invalid JSON (nested too deeply)"))
            if limit and len(rows) >= limit:
                break
    return rows


def _read_json(path: Path) -> list[RawRow]:
    with _open_text(path) as handle:
        try:
            data = json.load(handle)
        except RecursionError:
            raise DataFormatError(f"{path}: invalid JSON (nested too deeply)") from None
        except json.JSONDecodeError as error:
            if error.msg == "Extra data" and error.lineno > 1:  # JSON Lines saved as .json (common on the hub)
                return _read_jsonl(path, 0)
            raise DataFormatError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: a .json data file must hold a list of rows or {{\"data\": [...]}}, "
                              f"got {type(data).__name__}")
    return [RawRow(f"{path}:#{index}", row) for index, row in enumerate(data)]


def _read_csv(path: Path, limit: int) -> list[RawRow]:
    rows = []
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        start = 2  # the header is line 1
        for row in reader:
            location = f"{path}:{start}"
            start = reader.line_num + 1
            extra = row.pop(None, None)  # cells beyond the header
            if extra:
                rows.append(RawRow(location, row, f"{len(extra)} more cells than the header's "
                                                  f"{len(reader.fieldnames or [])} columns"))
            else:
                rows.append(RawRow(location, row))
            if limit and len(rows) >= limit:
                break
    return rows


def _read_parquet(path: Path) -> list[RawRow]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return [RawRow(f"{path}:#{index}", row) for index, row in enumerate(table.to_pylist())]


# --------------------------------------------------------------------------------------------
# Folders and dataset ids


def _read_folder(folder: Path, split: str, limit: int) -> list[RawRow]:
    if (folder / "dataset_info.json").is_file() or (folder / "dataset_dict.json").is_file():
        from datasets import load_from_disk

        return _dataset_rows(load_from_disk(str(folder)), str(folder), split, limit)
    files = _split_files(folder)
    if not files:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise DataFormatError(f"{folder}: no data files ({', '.join(EXTENSIONS)}) found"
                              + (f"; sub-folders: {', '.join(subfolders)}" if subfolders else ""))
    chosen = pick_split(sorted(files), split, str(folder))
    rows: list[RawRow] = []
    for path in files[chosen]:
        rows += read_file(path, limit - len(rows) if limit else 0)
        if limit and len(rows) >= limit:
            break
    return rows


def _split_files(folder: Path) -> dict[str, list[Path]]:
    """split name -> its files (``train.jsonl``, ``train-00000-of-00002.parquet``, ...)."""
    found: dict[str, list[Path]] = {}
    for directory in (folder, folder / "data"):
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            extension = next((e for e in EXTENSIONS if path.name.endswith(e)), None)
            if extension is None or not path.is_file():
                continue
            stem = path.name[: -len(extension)]
            found.setdefault(re.split(r"[-_.]\d", stem, maxsplit=1)[0], []).append(path)
    return found


def pick_split(available: list[str], wanted: str, where: str) -> str:
    """``wanted`` if given, else the only split, else ``train``; error naming the splits otherwise."""
    if wanted:
        if wanted not in available:
            raise DataFormatError(f"{where}: no split '{wanted}' (available: {', '.join(available)})")
        return wanted
    if len(available) == 1:
        return available[0]
    if "train" in available:
        return "train"
    raise DataFormatError(f"{where}: several splits ({', '.join(available)}); set the source's `split`")


def _read_dataset_id(dataset_id: str, split: str, limit: int) -> list[RawRow]:
    import datasets

    parts = dataset_id.split("/")
    repo, data_dir = "/".join(parts[:2]), "/".join(parts[2:]) or None
    try:
        loaded = datasets.load_dataset(repo, data_dir=data_dir, split=split or None)
    except Exception as error:  # offline, unknown id, unknown split: say which source failed
        raise DataFormatError(f"{dataset_id}: could not load Hugging Face dataset "
                              f"(no local file or folder of that name exists either): {error}") from error
    return _dataset_rows(loaded, dataset_id, split, limit)


def _dataset_rows(loaded, name: str, split: str, limit: int) -> list[RawRow]:
    """Rows of a ``datasets.Dataset`` or of one split of a ``DatasetDict``."""
    if hasattr(loaded, "keys"):  # DatasetDict
        split = pick_split(sorted(loaded.keys()), split, name)
        loaded = loaded[split]
    if limit:
        loaded = loaded.select(range(min(limit, len(loaded))))
    label = f"{name}[{split or loaded.split or 'train'}]"
    return [RawRow(f"{label}:#{index}", row) for index, row in enumerate(loaded.to_list())]


def columns_of(rows: list[RawRow], sample: int = 50) -> list[str]:
    """Column names seen in the first ``sample`` parseable dict rows, in first-seen order."""
    seen: dict[str, None] = {}
    for raw in rows[:sample]:
        if isinstance(raw.row, dict):
            seen.update(dict.fromkeys(raw.row))
    return list(seen)

