"""An in-memory file system kept in episode state (paths are plain keys; nothing touches the disk)."""

from __future__ import annotations

import posixpath
from typing import Any

from tl_lightning.tools.toolkit import ToolError, Toolkit, tool

MAX_BYTES = 10_000


def _norm(path: str) -> str:
    if not path.strip():
        raise ValueError("path must not be empty")
    return posixpath.normpath("/" + path.strip().lstrip("/"))


class FilesToolkit(Toolkit):
    name = "files"
    host = "api.files.example"

    def initial_state(self) -> dict[str, Any]:
        return {"files": {}}

    def _get(self, path: str) -> str:
        p = _norm(path)
        if p not in self.state["files"]:
            raise ToolError(f"No such file: '{p}'")
        return p

    @tool
    def write_file(self, path: str, content: str) -> dict:
        """Create or overwrite a text file.

        Args:
            path: File path, e.g. "/notes/todo.txt".
            content: The text to write.
        """
        p = _norm(path)
        if len(content) > MAX_BYTES:
            raise ValueError(f"content is {len(content)} characters; the limit is {MAX_BYTES}")
        self.state["files"][p] = content
        return {"path": p, "size": len(content)}

    @tool
    def read_file(self, path: str) -> dict:
        """Read a text file.

        Args:
            path: File path.
        """
        p = self._get(path)
        return {"path": p, "content": self.state["files"][p]}

    @tool
    def append_to_file(self, path: str, content: str) -> dict:
        """Append text to an existing file.

        Args:
            path: File path.
            content: The text to append.
        """
        p = self._get(path)
        new = self.state["files"][p] + content
        if len(new) > MAX_BYTES:
            raise ValueError(f"file would be {len(new)} characters; the limit is {MAX_BYTES}")
        self.state["files"][p] = new
        return {"path": p, "size": len(new)}

    @tool
    def list_files(self, directory: str = "/") -> dict:
        """List the files under a directory.

        Args:
            directory: Directory path.
        """
        d = _norm(directory).rstrip("/") + "/"
        return {"directory": d, "files": sorted(p for p in self.state["files"] if p.startswith(d))}

    @tool
    def delete_file(self, path: str) -> dict:
        """Delete a file.

        Args:
            path: File path.
        """
        p = self._get(path)
        del self.state["files"][p]
        return {"path": p, "deleted": True}
