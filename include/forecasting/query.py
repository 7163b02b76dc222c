"""Run SQL against the deployment's predictions database and print the rows as a table.

    .venv/bin/python -m forecasting.query "SELECT * FROM forecasts_latest WHERE store_id = 3"

For a laptop without a database client: it uses the config's own connection (FORECAST_CONFIG).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import sqlalchemy as sa

from forecasting.config import Config, load_config
from forecasting.db import make_engine


def run_query(config: Config, sql: str) -> pd.DataFrame:
    engine = make_engine(config.predictions.database)
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(sql), conn)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sql", help="one SQL statement, e.g. \"SELECT * FROM forecasts_latest LIMIT 10\"")
    args = parser.parse_args(argv)
    rows = run_query(load_config(), args.sql)
    print(rows.to_string(index=False) if len(rows) else "(no rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
