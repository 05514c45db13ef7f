"""Where a sweep keeps its state and its tables: a local or shared (NFS) folder, or an object store.

A `Storage` is a root on a pyarrow filesystem: a folder (`/data/drmfm`, `file:///data/drmfm`) or
a bucket prefix (`s3://bucket/drmfm`, `gs://…`; an S3-compatible endpoint goes in the query, as
pyarrow reads it: `s3://bucket/drmfm?endpoint_override=host:9000&scheme=http`). Every write is
whole or absent: on a folder by writing a temporary file and renaming it, on an object store by a
single upload, which the store publishes only when it completes.
"""

from __future__ import annotations

import errno
import io
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from drm.config import ConfigError

# What a folder without hard links answers os.link with (FUSE, SMB, some container overlays).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}

def first_line(error: BaseException) -> str:
    """An error in one line: an OSError's own words (strerror), else the first line of its text."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return (str(error).splitlines() or [type(error).__name__])[0][:200] or type(error).__name__


class Storage:
    """A root folder or bucket prefix; paths below it are '/'-joined relative parts."""

    def __init__(self, location: str | Path):
        text = str(location)
        if "://" in text and not text.startswith("file://"):
            self.fs, root = pafs.FileSystem.from_uri(text)
            self.local = False
            self.location = text
        else:
            root = str(Path(text.removeprefix("file://")).expanduser().resolve())
            self.fs = pafs.LocalFileSystem()
            self.local = True
            self.location = root
        self.root = root.rstrip("/")

    def __reduce__(self):  # pickles as its location: the filesystem is rebuilt where it lands
        return Storage, (self.location,)

    def __repr__(self) -> str:
        return f"Storage({self.location!r})"

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def show(self, *parts: str) -> str:
        """A path for people: the folder, or the URI without its query."""
        if self.local:
            return self.path(*parts)
        scheme = self.location.split("://", 1)[0]
        return f"{scheme}://{self.path(*parts)}"

    def sub(self, *parts: str) -> Storage:
        """The storage rooted at a folder below this one."""
        if self.local:
            return Storage(self.path(*parts))
        base, _, query = self.location.partition("?")
        return Storage("/".join([base.rstrip("/"), *parts]) + (f"?{query}" if query else ""))

    # Reading
    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def is_file(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type == pafs.FileType.File

    def names(self, *parts: str, suffix: str = "") -> list[str]:
        """File names directly in a folder (none if it does not exist), temporaries excluded."""
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(
            info.base_name
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.endswith(suffix) and not info.base_name.startswith(".")
        )

    def temporaries(self, *parts: str) -> list[str]:
        """Paths (relative, '/'-joined) of the temporary files a crashed write left anywhere below a folder."""
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True, recursive=True)
        base = self.path(*parts) + "/"
        return sorted(
            info.path.removeprefix(base)
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.startswith(".") and info.base_name.endswith(".tmp")
        )

    def folders(self, *parts: str) -> list[str]:
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.Directory)

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_file(self.path(*parts)) as f:
            return f.read()

    def tail(self, *parts: str, n: int = 1024) -> bytes:
        """The last n bytes of a file (or all of it, if shorter)."""
        with self.fs.open_input_file(self.path(*parts)) as f:
            f.seek(max(0, f.size() - n))
            return f.read()

    def read_table(self, *parts: str) -> pa.Table:
        # One file, read as one: pq.read_table(path) would first build a dataset (3.6× slower on
        # the small files a sweep writes, measured).
        with self.fs.open_input_file(self.path(*parts)) as f:
            return pq.ParquetFile(f).read()

    # Writing: whole or not at all
    def write_bytes(self, data: bytes, *parts: str) -> None:
        target = self.path(*parts)
        if not self.local:  # an object appears only when its upload completes
            with self.fs.open_output_stream(target) as f:
                f.write(data)
            return
        self._publish(data, target, os.replace)  # a rename on one filesystem: atomic

    def create(self, data: bytes, *parts: str) -> bool:
        """Write a file that does not exist yet, whole; False if it exists.

        On a folder (local or NFS) the check and the write are one atomic step: the bytes go to a
        temporary file that is then hard-linked to the name, which fails if the name is taken. A
        folder without hard links (some FUSE and SMB mounts) gets an exclusive create instead, just
        as atomic in its check, though a reader may see the file before its bytes.
        pyarrow's object-store filesystems offer no conditional write (S3's If-None-Match is not
        exposed), so there the check and the write are two steps (README, "One driver per sweep").
        """
        if not self.local:
            if self.exists(*parts):
                return False
            self.write_bytes(data, *parts)
            return True
        target = self.path(*parts)
        try:
            self._publish(data, target, os.link)
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
            return self._create_exclusively(data, target)
        return True

    @staticmethod
    def _create_exclusively(data: bytes, target: str) -> bool:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    @staticmethod
    def _publish(data: bytes, target: str, name_it) -> None:
        """Write `data` to a temporary file beside `target`, on disk before it is named (a crash
        leaves the old file or the new), then give it its name with `name_it(tmp, target)`."""
        folder, name = target.rsplit("/", 1)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            name_it(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def modified(self, *parts: str) -> float | None:
        """The file's modification time (seconds since the epoch), None if it is not there."""
        info = self.fs.get_file_info(self.path(*parts))
        if info.type == pafs.FileType.NotFound or info.mtime is None:
            return None
        return info.mtime.timestamp()

    def require_writable(self, field: str) -> None:
        """ConfigError naming `field` unless the root takes writes: a small file created, fsynced, removed."""
        name = f".drmfm-probe-{uuid.uuid4().hex[:8]}"
        try:
            self.write_bytes(b"probe", name)
            self.remove(name)
        except OSError as e:
            raise ConfigError(field, f"{self.show()} does not take writes ({first_line(e)}); allowed: a writable folder or bucket") from None

    def write_table(self, table: pa.Table, *parts: str, plain: tuple[str, ...] = ()) -> None:
        """Parquet, ZSTD; the `plain` columns without a dictionary (float noise: a dictionary of
        distinct values only adds to it, a third more for the profiles)."""
        buffer = io.BytesIO()
        dictionary = [name for name in table.column_names if name not in plain] if plain else True
        pq.write_table(table, buffer, compression="zstd", use_dictionary=dictionary)
        self.write_bytes(buffer.getvalue(), *parts)

    def write_text(self, text: str, *parts: str) -> None:
        self.write_bytes(text.encode(), *parts)

    def move(self, source: tuple[str, ...], target: tuple[str, ...]) -> None:
        """Rename on a folder; copy then delete on an object store (each object still whole)."""
        if not self.local:
            self.fs.copy_file(self.path(*source), self.path(*target))
            self.fs.delete_file(self.path(*source))
            return
        self.fs.create_dir(self.path(*target[:-1]), recursive=True)
        self.fs.move(self.path(*source), self.path(*target))

    def remove(self, *parts: str) -> None:
        """Delete a folder and what it holds; nothing if it is not there."""
        info = self.fs.get_file_info(self.path(*parts))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(*parts))
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(self.path(*parts))

    def tune_location(self, *parts: str) -> dict:
        """Ray Tune's storage_path (and storage_filesystem for an object store) for a folder here."""
        if self.local:
            return {"storage_path": self.path(*parts)}
        return {"storage_path": self.path(*parts), "storage_filesystem": self.fs}
