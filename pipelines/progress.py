"""A concise Dagster logger for the terminal: one line per finished step, loaded table and failed check.

Dagster's default console logger prints every engine event at DEBUG; a person running
`opsmap run` wants to see progress (which source, how many rows, which models) and, when
something fails, what failed and why — nothing else.
"""

import logging
import sys
import time

from dagster import InitLoggerContext, logger
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata


class ProgressHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)  # engine events arrive at DEBUG; render() picks what to show
        self.started = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        line = self.render(record)
        if line:
            elapsed = time.monotonic() - self.started
            print(f"[{elapsed:6.1f}s] {line}", file=sys.stderr, flush=True)

    @staticmethod
    def render(record: logging.LogRecord) -> str | None:
        if not has_log_record_metadata(record):
            return None
        meta = get_log_record_metadata(record)
        event = meta.get("dagster_event")
        if event is None:
            return meta["orig_message"] if record.levelno >= logging.INFO else None
        kind = event.event_type_value
        if kind == "STEP_FAILURE":
            error = event.step_failure_data.error  # type: ignore[union-attr]
            cause = error.cause.message if error and error.cause else ""
            return f"✗ {event.step_key}: {(error.message if error else '').strip()} {cause.strip()}".strip()
        if kind == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization  # type: ignore[union-attr]
            rows = materialization.metadata.get("rows_loaded") or materialization.metadata.get("dagster/row_count")
            count = f"{rows.value:,} rows" if rows is not None else ""
            return f"  {materialization.asset_key.to_user_string():<48} {count}"
        if kind == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data  # type: ignore[union-attr]
            if not evaluation.passed:
                return f"  ✗ check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed"
            return None
        if kind == "STEP_SKIPPED":
            return f"- skipped {event.step_key} (an upstream step failed or a blocking check stopped it)"
        return None


@logger(description="Concise progress for terminals: finished steps, rows per table, failed checks.")
def progress_logger(init_context: InitLoggerContext) -> logging.Logger:
    log = logging.getLogger("opsmap.progress")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    if not any(isinstance(h, ProgressHandler) for h in log.handlers):
        log.addHandler(ProgressHandler())
    return log
