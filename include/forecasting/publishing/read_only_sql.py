"""Which SQL ``forecasting.publishing.query`` sends to PostgreSQL: plain reads, checked by PostgreSQL's own parser.

A READ ONLY transaction is not enough on its own: server functions run in one too, and a
privileged role may run ``COPY ... TO PROGRAM``, read server files (``pg_read_file``), reload
the server's config or end other sessions (``pg_terminate_backend``, also the pipeline's own
role on its own sessions). So the statement is parsed with ``pglast`` (libpg_query, the
server's parser) and must be exactly one

* ``SELECT`` (``WITH ... SELECT``, ``VALUES``, ``TABLE``, set operations), or ``EXPLAIN`` of one
  without ``ANALYZE``;
* with no data-modifying ``WITH`` (every statement nested anywhere must be a ``SELECT``), no
  ``SELECT ... INTO`` and no locking clause (``FOR UPDATE``, ``FOR SHARE``, ...);
* calling only functions on ``ALLOWED_FUNCTIONS``: an allow-list of immutable or stable
  built-ins that read their arguments (aggregates, window functions, arithmetic, text, dates,
  JSON). An allow-list, not a deny-list, because the server has thousands of functions and
  gains more with each release and extension; and not a look-up of each name's volatility in
  ``pg_proc``, because stable is not harmless (``txid_current`` assigns a transaction id) and
  names resolve by ``search_path`` and argument types.

Operators and casts still run functions, but only the ones their (built-in) definitions name.
"""

from __future__ import annotations

import sqlalchemy as sa
from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor
from sqlalchemy.dialects import postgresql

READ_ONLY = "forecasting.publishing.query is read-only"
ONE_STATEMENT = "forecasting.publishing.query runs exactly one SQL statement"
WHAT_RUNS = "it runs one SELECT (WITH ... SELECT, VALUES, TABLE) or EXPLAIN without ANALYZE"

# Immutable or stable built-ins that compute from their arguments and read nothing else
# (tests/publishing/test_query.py checks each against pg_proc on the test server).
ALLOWED_FUNCTIONS = frozenset(
    {
        # aggregates
        *("count", "sum", "avg", "min", "max", "every", "bool_and", "bool_or", "string_agg"),
        *("array_agg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp"),
        *("corr", "covar_pop", "covar_samp", "regr_slope", "regr_intercept", "regr_r2", "regr_count"),
        *("percentile_cont", "percentile_disc", "mode", "json_agg", "jsonb_agg", "json_object_agg"),
        # window functions
        *("row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile"),
        *("lag", "lead", "first_value", "last_value", "nth_value"),
        # numbers
        *("abs", "round", "trunc", "ceil", "ceiling", "floor", "sign", "mod", "div", "power", "pow"),
        *("sqrt", "cbrt", "exp", "ln", "log", "log10", "width_bucket"),
        *("numeric", "float8", "float4", "int8", "int4", "int2", "isfinite"),
        # text
        *("length", "char_length", "character_length", "lower", "upper", "initcap", "btrim"),
        *("ltrim", "rtrim", "lpad", "rpad", "substr", "substring", "position", "strpos"),
        *("replace", "concat", "concat_ws", "left", "right", "split_part", "starts_with", "format"),
        *("reverse", "repeat", "md5", "to_char", "to_number", "text"),
        # dates and times
        *("date", "date_trunc", "date_part", "extract", "age", "make_date", "make_timestamp"),
        *("make_interval", "to_date", "to_timestamp", "now", "timezone", "justify_days"),
        # arrays and JSON
        *("array_length", "cardinality", "unnest", "array_position", "array_to_string"),
        *("json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array"),
        *("to_json", "to_jsonb", "jsonb_pretty", "json_extract_path_text", "jsonb_extract_path_text"),
        # nulls and series
        *("num_nulls", "num_nonnulls", "generate_series"),
        # settings the role may see
        "current_setting",
    }
)


class RefusedSql(ValueError):
    """The statement is not one plain read."""


class NotParsed(ValueError):
    """PostgreSQL's parser does not accept the statement (a syntax error)."""


def postgres_text(sql: str) -> str:
    """``sql`` as PostgreSQL receives it: SQLAlchemy's ``:name`` placeholders as ``$1``, ``$2``..."""
    return str(sa.text(sql).compile(dialect=postgresql.psycopg.dialect(paramstyle="numeric_dollar")))


def check_read_only(sql: str) -> None:
    """Raise RefusedSql unless ``sql`` (PostgreSQL text) is exactly one plain read; NotParsed
    when it does not parse."""
    try:
        statements = parse_sql(sql)
    except ParseError as err:
        raise NotParsed(str(err)) from None
    if len(statements) != 1:
        raise RefusedSql(f"{ONE_STATEMENT}, not {len(statements)}")
    statement = statements[0].stmt
    if isinstance(statement, ast.ExplainStmt):
        analyze = [o for o in statement.options or () if o.defname == "analyze"]
        if analyze:  # EXPLAIN ANALYZE runs the statement
            raise RefusedSql(f"{READ_ONLY}: {WHAT_RUNS}, not EXPLAIN ANALYZE")
        statement = statement.query
    if not isinstance(statement, ast.SelectStmt):
        raise RefusedSql(f"{READ_ONLY}: {WHAT_RUNS}, not {_kind(statement)}")
    if statement.intoClause is not None:
        raise RefusedSql(f"{READ_ONLY}: SELECT ... INTO creates a table")
    _Checker()(statement)


def _kind(node: ast.Node | None) -> str:
    """A statement's kind as a person would name it: ``CopyStmt`` is COPY."""
    name = type(node).__name__.removesuffix("Stmt")
    return {"Copy": "COPY", "Insert": "INSERT", "Update": "UPDATE", "Delete": "DELETE", "Merge": "MERGE"}.get(
        name, f"a {name} statement"
    )


class _Checker(Visitor):
    """Walks every node of a SELECT: nested statements, locking clauses, function calls."""

    def visit(self, ancestors, node):
        if isinstance(node, ast.SelectStmt):
            if node.intoClause is not None:
                raise RefusedSql(f"{READ_ONLY}: SELECT ... INTO creates a table")
        elif isinstance(node, ast.LockingClause):
            raise RefusedSql(f"{READ_ONLY}: a locking clause (FOR UPDATE, FOR SHARE) takes row locks")
        elif isinstance(node, ast.FuncCall):
            _check_function(node)
        elif type(node).__name__.endswith("Stmt"):  # WITH gone AS (DELETE ...) SELECT ...
            raise RefusedSql(f"{READ_ONLY}: {WHAT_RUNS}; this one holds {_kind(node)}")


def _check_function(call: ast.FuncCall) -> None:
    names = [part.sval for part in call.funcname or ()]
    schema, name = (names[0] if len(names) > 1 else None), names[-1]
    if schema in (None, "pg_catalog") and len(names) <= 2 and name in ALLOWED_FUNCTIONS:
        return
    raise RefusedSql(
        f"{READ_ONLY}: it calls only built-in functions that compute from their arguments "
        f"(ALLOWED_FUNCTIONS in forecasting.publishing.read_only_sql), not {'.'.join(names)}()"
    )
