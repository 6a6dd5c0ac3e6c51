"""A to-do list kept in episode state."""

from __future__ import annotations

from typing import Any, Literal

from tl_lightning.tools.toolkit import ToolError, Toolkit, tool
from tl_lightning.tools.toolkits._common import parse_date


class TodoToolkit(Toolkit):
    name = "todo"
    host = "api.todo.example"

    def initial_state(self) -> dict[str, Any]:
        return {"tasks": [], "next_id": 1}

    def _task(self, task_id: int) -> dict[str, Any]:
        for t in self.state["tasks"]:
            if t["task_id"] == task_id:
                return t
        raise ToolError(f"Task {task_id} not found")

    @tool
    def add_task(self, title: str, due_date: str | None = None, priority: Literal["low", "medium", "high"] = "medium") -> dict:
        """Add a task to the to-do list.

        Args:
            title: What to do.
            due_date: Due date in YYYY-MM-DD format.
            priority: Task priority.
        """
        if not title.strip():
            raise ValueError("title must not be empty")
        due = parse_date(due_date).isoformat() if due_date is not None else None
        task = {"task_id": self.state["next_id"], "title": title.strip(), "due_date": due, "priority": priority, "done": False}
        self.state["next_id"] += 1
        self.state["tasks"].append(task)
        return dict(task)

    @tool
    def list_tasks(self, status: Literal["open", "done", "all"] = "open") -> dict:
        """List the tasks on the to-do list.

        Args:
            status: Which tasks to list.
        """
        tasks = [dict(t) for t in self.state["tasks"] if status == "all" or t["done"] == (status == "done")]
        return {"status": status, "tasks": tasks}

    @tool
    def complete_task(self, task_id: int) -> dict:
        """Mark a task as done.

        Args:
            task_id: The task id.
        """
        task = self._task(task_id)
        if task["done"]:
            raise ToolError(f"Task {task_id} is already done")
        task["done"] = True
        return {"task_id": task_id, "title": task["title"], "done": True}

    @tool
    def delete_task(self, task_id: int) -> dict:
        """Delete a task from the to-do list.

        Args:
            task_id: The task id.
        """
        task = self._task(task_id)
        self.state["tasks"].remove(task)
        return {"task_id": task_id, "deleted": True}

    @tool
    def update_task_priority(self, task_id: int, priority: Literal["low", "medium", "high"]) -> dict:
        """Change the priority of a task.

        Args:
            task_id: The task id.
            priority: The new priority.
        """
        task = self._task(task_id)
        task["priority"] = priority
        return {"task_id": task_id, "title": task["title"], "priority": priority}
