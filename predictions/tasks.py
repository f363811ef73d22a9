"""Prediction type -> how it is trained (the behaviour registry beside the definitions registry)."""

from __future__ import annotations

from predictions import churn, goal, ltv
from predictions.pipeline import Task

TASKS: dict[str, Task] = {t.type: t for t in (churn.TASK, goal.TASK, ltv.TASK)}
