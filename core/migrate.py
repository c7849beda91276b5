"""`python -m core.migrate`: apply the SQL migrations to TICKRUN_DATABASE_URL."""

from __future__ import annotations

import sys

from core.environment import check_environment, read_settings, settings_or_exit
from core.settings import CoreSettings
from core.store import open_store


def main() -> int:
    settings = settings_or_exit("migrate", _read_settings)
    store = open_store(settings.database_url.get_secret_value(), pool_size=1)
    try:
        applied = store.migrate()
    finally:
        store.close()
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


def _read_settings() -> CoreSettings:
    check_environment()
    return read_settings(CoreSettings)


if __name__ == "__main__":
    sys.exit(main())
