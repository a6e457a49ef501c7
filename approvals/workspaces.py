"""Which Slack workspace may see and decide which work: the one its task was started in.

A task carries the team id of the request that started it (slash command, mention). Every
read or decision driven by Slack input passes the request's team, and work of another team is
treated as if it did not exist. Tasks started without a team (the task API, the CLI) and
requests without one (never sent by Slack) are not restricted: in single-workspace mode
everything is one workspace's.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, true

from core.models import Task


def same_workspace(task_team: str | None, team: str | None) -> bool:
    return team is None or task_team is None or task_team == team


def visible_tasks(team: str | None) -> ColumnElement[bool]:
    """A filter on `Task` for the tasks a request from `team` may see."""
    return true() if team is None else or_(Task.team_id.is_(None), Task.team_id == team)
