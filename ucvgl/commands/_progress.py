"""The command line's :class:`~ucvgl.services.progress.Progress`: rich bars a person can read.

One overall line for the run: its percent, the current stage and the run's ETA, computed
as the job API computes them (the fraction the run reports, and
:func:`ucvgl.services.progress.eta_seconds` of the time since it began). Below it one bar
per stage in the stage's own units (training steps, images, panoramas...) with its rate
and its own ETA; stages that report no counts get a line with their message.

On a terminal the bars are live; when stderr is a file or a pipe a plain snapshot of the
overall line and the current stage is printed at each new stage and every ``log_every_s``.
"""

from __future__ import annotations

import functools
import io
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID
from rich.text import Text

from ucvgl.services.progress import StageCount, eta_seconds

RUN_KIND, STAGE_KIND = "run", "stage"


def format_duration(seconds: float | None) -> str:
    """ "1 h 02 min", "3 min 05 s", "12 s"; an em dash when unknown (as the dashboard)."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "—"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s} s"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes} min {s % 60:02d} s"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def percent(fraction: float) -> int:
    """A fraction as a whole percent, rounded half up (the dashboard's ``Math.round``)."""
    return int(min(max(fraction, 0.0), 1.0) * 100 + 0.5)


def _is_run(task: Task) -> bool:
    return task.fields.get("kind") == RUN_KIND


def _count(task: Task) -> str:
    """A stage's "done/total unit"."""
    return f"{int(task.completed)}/{int(task.total)} {task.fields.get('unit', '')}"


class _RunOrStage(ProgressColumn):
    """A column drawn one way on the run's line and another on each stage's bar."""

    def render(self, task: Task) -> Text:  # noqa: D102
        return self.run(task) if _is_run(task) else self.stage(task)

    def run(self, task: Task) -> Text:
        """The run's cell (empty unless a column says otherwise)."""
        return Text("")

    @abstractmethod
    def stage(self, task: Task) -> Text:
        """A stage's cell."""


class _Amount(_RunOrStage):
    """Run: percent. Stage: done/total units."""

    def run(self, task: Task) -> Text:  # noqa: D102
        return Text(f"{percent(task.fields['fraction']):>3d}%", style="bold")

    def stage(self, task: Task) -> Text:  # noqa: D102
        if task.total is None or not task.fields.get("unit"):
            return Text("")
        return Text(_count(task))


class _Rate(_RunOrStage):
    """Stage: units per second (over the last 30 s; the whole stage once finished)."""

    def stage(self, task: Task) -> Text:  # noqa: D102
        unit = task.fields.get("unit")
        speed = task.finished_speed or task.speed
        if not unit or not speed:
            return Text("")
        return Text(f"{speed:.3g} {unit}/s")


class _Eta(_RunOrStage):
    """Run: the API's ETA. Stage: its own ETA, or how long it took once over."""

    def run(self, task: Task) -> Text:  # noqa: D102
        return Text(f"ETA {format_duration(task.fields['eta'])}", style="bold")

    def stage(self, task: Task) -> Text:  # noqa: D102
        if task.finished or task.stop_time is not None:
            return Text(f"took {format_duration(task.finished_time or task.elapsed)}")
        if not task.fields.get("unit"):
            return Text("")
        return Text(f"ETA {format_duration(task.time_remaining)}")


class _Note(_RunOrStage):
    """Run: the current stage. Stage: its latest message."""

    def run(self, task: Task) -> Text:  # noqa: D102
        return Text(f"stage: {task.fields['stage']}", style="bold")

    def stage(self, task: Task) -> Text:  # noqa: D102
        message = str(task.fields.get("message", ""))
        if task.total is not None and message == _count(task):
            return Text("")  # the amount column says it already
        return Text(message if len(message) <= 70 else message[:69] + "…", style="dim")


def _locked(method):
    """Run ``method`` under the instance's lock (stages may report from several threads)."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return run


@dataclass
class _Stage:
    task: TaskID
    stage: str
    key: tuple


class CliProgress:
    """Shows an overall line for the run and one bar per stage in its own units.

    Args:
        title: the overall line's label ("run"; :meth:`begin` starts another phase).
        console: where to draw (default: stderr).
        clock: seconds, monotonic (tests pass a fake one).
        live: redraw in place (default: when the console is a terminal).
        keep_stages: finished stage bars kept on screen (older ones are hidden).
        log_every_s: without a live display, print a snapshot at most this often.
        disable: draw nothing (the state is still kept; :meth:`snapshot` renders it).
    """

    def __init__(
        self,
        title: str = "run",
        *,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
        live: bool | None = None,
        keep_stages: int = 6,
        log_every_s: float = 30.0,
        disable: bool = False,
    ) -> None:
        self._lock = threading.RLock()
        self.console = console or Console(stderr=True)
        self.clock = clock
        self.live = self.console.is_terminal if live is None else live
        self.keep_stages, self.log_every_s, self.disable = keep_stages, log_every_s, disable
        self._bars = Progress(
            _NameColumn(),
            BarColumn(bar_width=24),
            _Amount(),
            _Rate(),
            _Eta(),
            _Note(),
            console=self.console,
            get_time=clock,
            transient=False,
        )
        self._started_live = False
        self._closed = False
        self._stages: list[_Stage] = []
        self._began = clock()
        self._fraction = 0.0
        self._stage = ""
        self._last_log = float("-inf")
        self._log_due = False
        self._last_lines: list[str] = []
        self._run = self._bars.add_task(title, total=1.0, kind=RUN_KIND, fraction=0.0, eta=None)
        self._bars.update(self._run, stage="—")

    # ------------------------------------------------------------------ Progress
    @_locked
    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """The run is ``fraction`` done, in ``stage`` (a stage without counts)."""
        self._set_run(stage, fraction)
        current = self._stages[-1] if self._stages else None
        if current is None or current.stage != stage:
            self._new_stage(stage, (stage,), None, "", message)
        elif message:
            self._bars.update(current.task, message=message)
        self._show()

    @_locked
    def update_count(
        self, stage: str, fraction: float, count: StageCount, message: str = ""
    ) -> None:
        """The run is ``fraction`` done; ``count`` is the stage's own progress."""
        self._set_run(stage, fraction)
        key = (stage, count.name, count.unit, count.total)
        current = self._stages[-1] if self._stages else None
        if current is not None and current.key == (stage,) and count.name == stage:
            current.key = key  # the stage said what it does, now it counts: one bar
            self._bars.update(current.task, total=count.total, unit=count.unit)
        elif current is None or current.key != key:
            name = stage if count.name == stage else f"{stage} · {count.name}"
            self._new_stage(stage, key, count.total, count.unit, message, name)
            current = self._stages[-1]
        self._bars.update(current.task, completed=count.done, message=message)
        self._show()

    def check_cancelled(self) -> None:
        """The CLI is cancelled with Ctrl-C; nothing to check."""
        return None

    # ------------------------------------------------------------------ phases, output
    @_locked
    def begin(self, title: str) -> None:
        """Start another phase (e.g. the demo's world, then its pipeline): percent and
        ETA count from now, as a new job's would."""
        self._end_stage()
        self._began, self._fraction, self._stage = self.clock(), 0.0, ""
        self._bars.update(self._run, description=title, completed=0.0, fraction=0.0, eta=None)
        self._bars.update(self._run, stage="—")
        self._log_due = True

    @_locked
    def finish(self) -> None:
        """The run succeeded: 100%, stage "done" (as the worker marks a finished job)."""
        self._end_stage()
        self._set_run("done", 1.0)
        self._log_due = True
        self._show()

    @property
    def fraction(self) -> float:
        """The run's progress 0..1 as last reported."""
        return self._fraction

    def eta(self) -> float | None:
        """Seconds left in the run (:func:`~ucvgl.services.progress.eta_seconds`)."""
        return eta_seconds(self._fraction, self.clock() - self._began)

    @_locked
    def snapshot(self, width: int = 160, current_only: bool = False) -> str:
        """The bars as plain text (every visible one, or the run and the current stage)."""
        self._refresh_run()
        tasks = [t for t in self._bars.tasks if t.visible]
        if current_only:
            tasks = [
                t
                for t in tasks
                if t.id == self._run or (self._stages and t.id == self._stages[-1].task)
            ]
        console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
        console.print(self._bars.make_tasks_table(tasks))
        return console.file.getvalue()  # type: ignore[attr-defined]

    @_locked
    def lines(self) -> list[str]:
        """The run's line and the current stage's, as plain one-line text (for logs)."""
        self._refresh_run()
        ids = [self._run] + ([self._stages[-1].task] if self._stages else [])
        tasks = {t.id: t for t in self._bars.tasks}
        columns = [c for c in self._bars.columns if not isinstance(c, (BarColumn, str))]
        out = []
        for task_id in ids:
            parts = [c.render(tasks[task_id]).plain for c in columns]  # type: ignore[union-attr]
            out.append("  ".join(part for part in parts if part))
        return out

    @_locked
    def close(self) -> None:
        """Stop drawing (the last state stays on screen or in the log); safe to repeat."""
        if self._closed:
            return
        self._closed = True
        self._end_stage()
        if self._started_live:
            self._refresh_run()
            self._bars.stop()
        elif not self.disable and not self.live and self._stages:
            self._log()

    # ------------------------------------------------------------------ internals
    def _set_run(self, stage: str, fraction: float) -> None:
        self._fraction = min(max(float(fraction), 0.0), 1.0)
        self._stage = stage
        self._refresh_run()

    def _refresh_run(self) -> None:
        self._bars.update(
            self._run,
            completed=self._fraction,
            fraction=self._fraction,
            eta=self.eta(),
            stage=self._stage or "—",
        )

    def _new_stage(
        self,
        stage: str,
        key: tuple,
        total: int | None,
        unit: str,
        message: str,
        name: str | None = None,
    ) -> None:
        self._end_stage()
        task = self._bars.add_task(
            name or stage, total=total, kind=STAGE_KIND, unit=unit, message=message
        )
        self._stages.append(_Stage(task, stage, key))
        for old in self._stages[: -self.keep_stages - 1]:
            self._bars.update(old.task, visible=False)
        self._log_due = True

    def _end_stage(self) -> None:
        """Freeze the current stage's bar (a stage without counts shows as complete)."""
        if not self._stages:
            return
        task = next(t for t in self._bars.tasks if t.id == self._stages[-1].task)
        if task.total is None:
            self._bars.update(task.id, total=1, completed=1)
        if not task.finished:
            self._bars.stop_task(task.id)

    def _show(self) -> None:
        """Start the live display, or print a snapshot when a stage began or one is due."""
        if self.disable or self._closed:
            return
        if self.live:
            if not self._started_live:
                self._bars.start()
                self._started_live = True
            return
        now = self.clock()
        if self._log_due or now - self._last_log >= self.log_every_s:
            self._last_log, self._log_due = now, False
            self._log()

    def _log(self) -> None:
        """Print :meth:`lines` unless they are what was printed last."""
        lines = self.lines()
        if lines != self._last_lines:
            self._last_lines = lines
            for line in lines:
                self.console.out(line, highlight=False)


class _NameColumn(ProgressColumn):
    """The run's title (bold) or the stage's name."""

    def render(self, task: Task) -> Text:  # noqa: D102
        return Text(task.description, style="bold" if _is_run(task) else "")


TqdmProgress = CliProgress
"""The former name (the bars were tqdm's); kept for code written against it."""
