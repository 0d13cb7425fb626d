"""The compiled core of the latefill package (Rust). Use ``latefill.Engine``; these
calls return the JSON text the ``latefill`` command prints with ``--format json``."""

from typing import Callable, List, Optional, Tuple

__version__: str

class Engine:
    def __init__(
        self,
        config: str,
        pipeline: Optional[str] = None,
        run_id: Optional[str] = None,
        lease_seconds: int = 600,
        strategy: Optional[str] = None,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def granularity(self) -> str: ...
    def period(self, date: str) -> str: ...
    def run_date(
        self,
        date: str,
        lookback: Optional[int] = None,
        late: str = "backfill",
        plan_file: Optional[str] = None,
        allow_empty: bool = False,
        source_version: Optional[int] = None,
    ) -> str: ...
    def detect(self, date: str, lookback: Optional[int] = None) -> str: ...
    def backfill(
        self,
        start: str,
        end: str,
        concurrency: int = 1,
        selection: str = "pending",
        on_event: Optional[Callable[[str], None]] = None,
        batch_size: int = 8,
    ) -> str: ...
    def status(self) -> str: ...
    def lateness(self, start: Optional[str] = None, end: Optional[str] = None) -> str: ...

def project_order(config: str) -> List[Tuple[str, Optional[str]]]: ...
def project_engines(
    config: str,
    run_id: Optional[str] = None,
    lease_seconds: int = 600,
    strategy: Optional[str] = None,
) -> List[Engine]: ...
def changes(table: str, since_version: Optional[int] = None) -> str: ...
def main(args: List[str]) -> int: ...
