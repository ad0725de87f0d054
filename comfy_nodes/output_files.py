"""Where Save Video (Streaming) may write: inside ComfyUI's output folder, named the way core's save nodes name.

folder_paths.get_save_image_path already refuses a prefix whose folder escapes the output folder; we check the
common mistakes first (an absolute path, `..`) so the user gets a sentence instead of a log dump, and so the
check can run at validation time, before the prompt is queued. Its check compares absolute paths without following
symbolic links, so a link inside the output folder would lead the file elsewhere: we compare real paths, once on
the prefix as typed (before ComfyUI creates any folder) and once on the folder ComfyUI names (after its %width%
and %year% substitutions).
"""

from __future__ import annotations

import ntpath
import os
from dataclasses import dataclass
from typing import Optional

import folder_paths

from ..streamvae import StreamVAEError

MAX_NAME_BYTES = 255  # one path component on Linux, macOS and Windows file systems
# The saved name adds "_00001_.<ext>" (up to 12 bytes) and the temporary name ".<name>.<8 hex>.partial" 18 more.
MAX_PREFIX_NAME_BYTES = MAX_NAME_BYTES - 12 - 18


def prefix_problem(prefix: str) -> Optional[str]:
    """Why `prefix` cannot be used, or None when it can."""
    if not prefix.strip():
        return "filename_prefix is empty; give a name such as video/StreamVAE"
    if os.path.isabs(prefix) or ntpath.isabs(prefix) or ntpath.splitdrive(prefix)[0]:
        return (f"filename_prefix {prefix!r} is an absolute path; give a path relative to ComfyUI's output "
                "folder, such as video/StreamVAE")
    if any(ord(character) < 32 or character == "\x7f" for character in prefix):
        return (f"filename_prefix {prefix!r} contains a control character (a NUL byte or a line break); "
                "use letters, digits, '-', '_' and '/' for folders")
    parts = prefix.replace("\\", "/").split("/")
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in parts)
    if longest > MAX_NAME_BYTES or len(parts[-1].encode("utf-8", "surrogatepass")) > MAX_PREFIX_NAME_BYTES:
        return (f"filename_prefix is too long for a file name ({longest} bytes in one part); keep each folder "
                f"name under {MAX_NAME_BYTES} bytes and the file name under {MAX_PREFIX_NAME_BYTES}")
    normalized = os.path.normpath(prefix.replace("\\", "/"))
    if normalized == ".." or normalized.startswith("../"):
        return (f"filename_prefix {prefix!r} points outside ComfyUI's output folder; remove the '..' and give "
                "a path inside it, such as video/StreamVAE")
    return link_problem(prefix, os.path.dirname(os.path.normpath(prefix)))


def link_problem(prefix: str, folder: str) -> Optional[str]:
    """Why the files can't go into `folder` (relative to the output folder, or absolute): a symbolic link on the way
    leads out of the output folder. None when the folder, links followed, stays inside."""
    output_dir = folder_paths.get_output_directory()
    real_output = os.path.realpath(output_dir)
    real_folder = os.path.realpath(os.path.join(output_dir, folder))
    if _is_inside(real_folder, real_output):
        return None
    return (f"filename_prefix {prefix!r} leads out of ComfyUI's output folder through a symbolic link (its folder "
            f"is really {real_folder}); save into a folder that is inside the output folder, or start ComfyUI with "
            "--output-directory set to where the videos should go")


def _is_inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath((folder, path)) == folder
    except ValueError:  # on another drive (Windows)
        return False


@dataclass(frozen=True)
class OutputFile:
    path: str
    filename: str
    subfolder: str


def plan_output_files(prefix: str, extension: str, count: int, width: int, height: int) -> list[OutputFile]:
    """`count` fresh names `<prefix>_00001_.<extension>`, numbered after the files already there."""
    problem = prefix_problem(prefix)
    if problem:
        raise StreamVAEError(problem)
    output_dir = folder_paths.get_output_directory()
    try:
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, output_dir, width, height)
    except Exception as error:  # noqa: BLE001 - folder_paths raises a bare Exception for an escaping prefix
        # Newer releases resolve symbolic links in this check too, so a link leading out is refused here, before
        # link_problem below could name it.
        raise StreamVAEError(f"filename_prefix {prefix!r} leads out of ComfyUI's output folder ({output_dir}), "
                             "through '..' or a symbolic link once ComfyUI filled in its %…% fields; give a path "
                             "inside it, such as video/StreamVAE, or start ComfyUI with --output-directory where "
                             "the files should go") from error
    problem = link_problem(prefix, folder)  # the folder as ComfyUI named it, %width% and the like filled in
    if problem:
        raise StreamVAEError(problem)
    names = [f"{filename}_{counter + index:05}_.{extension}" for index in range(count)]
    return [OutputFile(os.path.join(folder, name), name, subfolder) for name in names]
