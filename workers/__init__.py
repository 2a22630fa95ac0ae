"""Worker actors for supervision trees (the actor base and connection workers).

Empty for now: the actor base and the connection workers are separate issues.
"""

from __future__ import annotations

__all__: list[str] = []
