"""``python -m supervisor run package.module:tree`` (see ``supervisor._cli``)."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
