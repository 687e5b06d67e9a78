"""A tqdm-backed :class:`ucvgl.services.progress.Progress` for the command line."""

from __future__ import annotations

from tqdm.auto import tqdm


class TqdmProgress:
    """Shows one progress bar per stage; a new stage name closes the previous bar."""

    def __init__(self, disable: bool = False) -> None:
        self._bar: tqdm | None = None
        self._stage: str | None = None
        self._disable = disable

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        """Move the bar of ``stage`` to ``fraction`` (0..1)."""
        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=1000, desc=stage, unit="‰", disable=self._disable, leave=True)
        assert self._bar is not None
        target = int(round(min(max(fraction, 0.0), 1.0) * 1000))
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)
        if message:
            self._bar.set_postfix_str(message, refresh=False)

    def check_cancelled(self) -> None:
        """The CLI is cancelled with Ctrl-C; nothing to check."""
        return None

    def close(self) -> None:
        """Close the current bar, if any."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
