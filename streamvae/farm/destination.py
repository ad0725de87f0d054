"""Where the farm's outputs go: a folder, or an object store URL through fsspec (s3://bucket/prefix, gs://...).

A file appears in DEST whole or not at all. In a folder (or any filesystem with a rename) it is written under a
temporary name in DEST/.streamvae-partial/ and renamed into place; object stores create an object only when its
upload completes, so there the file is put at its final key directly. A worker killed mid-copy leaves at most a
file in .streamvae-partial/, which the next run removes.

After a job's outputs, its worker puts a receipt in DEST/.streamvae-done/ID.json: the job's manifest record. The
driver appends it to the manifest and deletes the receipt; if the driver died first, its next run finds the
receipt and records the job from it instead of running it again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Optional

from . import extra

PARTIAL_FOLDER = ".streamvae-partial"
RECEIPTS_FOLDER = ".streamvae-done"
# Stores where an upload becomes visible only once complete (single PUT or completed multipart upload).
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"}


class Destination:
    """DEST of a farm run. Picklable: it travels to the workers, which open their own connection."""

    def __init__(self, spec: str, storage_options: Optional[dict] = None):
        self.spec = str(spec)
        self.storage_options = dict(storage_options or {})
        self.protocol = self.spec.split("://", 1)[0] if "://" in self.spec else "file"
        self.is_local = self.protocol == "file"
        self.local_root = Path(self.spec.removeprefix("file://")).expanduser().resolve() if self.is_local else None
        self._fs = None

    def __getstate__(self):
        return {**self.__dict__, "_fs": None}

    def __str__(self) -> str:
        return str(self.local_root) if self.is_local else self.spec

    def location(self, name: str) -> str:
        return str(self.local_root / name) if self.is_local else f"{self.spec.rstrip('/')}/{name}"

    # ---- writing

    def publish(self, source: Path, name: str) -> str:
        """Put the local file `source` into DEST as `name`, whole or not at all; where it now is."""
        if self.is_local:
            return self._publish_local(Path(source), name)
        fs, root = self._filesystem()
        target = f"{root.rstrip('/')}/{name}"
        if self.protocol in OBJECT_STORES:
            fs.put_file(str(source), target)
        else:
            partial = f"{root.rstrip('/')}/{PARTIAL_FOLDER}/{Path(name).name}.{uuid.uuid4().hex}"
            fs.put_file(str(source), partial)
            fs.mv(partial, target)
        return self.location(name)

    def _publish_local(self, source: Path, name: str) -> str:
        partial_folder = self.local_root / PARTIAL_FOLDER
        partial_folder.mkdir(parents=True, exist_ok=True)
        partial = partial_folder / f"{Path(name).name}.{uuid.uuid4().hex}"
        try:
            with open(source, "rb") as reader, open(partial, "wb") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
                writer.flush()
                os.fsync(writer.fileno())  # the bytes are on disk before the name says the file is complete
            (self.local_root / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, self.local_root / name)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return self.location(name)

    def put_receipt(self, job_id: str, record: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "receipt.json"
            path.write_text(json.dumps(record, ensure_ascii=False, sort_keys=True))
            self.publish(path, f"{RECEIPTS_FOLDER}/{job_id}.json")

    def remove_receipt(self, job_id: str) -> None:
        if self.is_local:
            (self.local_root / RECEIPTS_FOLDER / f"{job_id}.json").unlink(missing_ok=True)
            return
        fs, root = self._filesystem()
        try:
            fs.rm_file(f"{root.rstrip('/')}/{RECEIPTS_FOLDER}/{job_id}.json")
        except FileNotFoundError:
            pass

    # ---- reading back

    def receipts(self, job_ids: set) -> dict[str, dict]:
        """{job id: record} of the receipts in DEST for these jobs (those whose driver died before recording them)."""
        if self.is_local:
            folder = self.local_root / RECEIPTS_FOLDER
            paths = {job_id: folder / f"{job_id}.json" for job_id in job_ids}
            return {job_id: json.loads(path.read_text()) for job_id, path in paths.items() if path.is_file()}
        fs, root = self._filesystem()
        folder = f"{root.rstrip('/')}/{RECEIPTS_FOLDER}"
        try:
            present = {path.rsplit("/", 1)[-1] for path in fs.ls(folder, detail=False, refresh=True)}
        except FileNotFoundError:
            return {}
        return {job_id: json.loads(fs.cat_file(f"{folder}/{job_id}.json")) for job_id in job_ids
                if f"{job_id}.json" in present}

    def sizes(self) -> dict[str, int]:
        """{name: size} of the files in DEST (not in subfolders); {} when DEST does not exist yet."""
        if self.is_local:
            if not self.local_root.is_dir():
                return {}
            return {entry.name: entry.stat().st_size for entry in os.scandir(self.local_root) if entry.is_file()}
        fs, root = self._filesystem()
        try:
            entries = fs.ls(root, detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        return {entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry["size"] for entry in entries
                if entry.get("type") == "file"}

    def remove_partials(self) -> int:
        """Delete what interrupted copies left in DEST/.streamvae-partial/ (and an empty receipts folder); how many
        files that was."""
        if self.is_local:
            folder = self.local_root / PARTIAL_FOLDER
            leftovers = list(folder.iterdir()) if folder.is_dir() else []
            for path in leftovers:
                path.unlink(missing_ok=True)
            if folder.is_dir():
                folder.rmdir()
            receipts = self.local_root / RECEIPTS_FOLDER
            if receipts.is_dir() and not any(receipts.iterdir()):
                receipts.rmdir()
            return len(leftovers)
        if self.protocol in OBJECT_STORES:
            return 0  # nothing partial is ever visible there
        fs, root = self._filesystem()
        folder = f"{root.rstrip('/')}/{PARTIAL_FOLDER}"
        leftovers = fs.find(folder) if fs.exists(folder) else []
        for path in leftovers:
            fs.rm_file(path)
        return len(leftovers)

    def _filesystem(self):
        if self._fs is None:
            self._fs = extra.filesystem(self.spec, self.storage_options)
        return self._fs


def read_input(location: str, storage_options: dict, target: Path) -> None:
    """Copy an input file given as a URL (s3://bucket/latents/x.latent) to target; FileNotFoundError if absent."""
    fs, path = extra.filesystem(location, storage_options)
    fs.get_file(path, str(target))
