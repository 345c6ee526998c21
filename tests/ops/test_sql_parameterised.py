"""Every SQL statement the pipeline sends is a constant: values travel as bound parameters, never inside the text.

ruff's S608 flags string-built SQL only when the string itself looks like a query (`"SELECT ... " + x`,
f"DELETE FROM {t}"); it misses SQL kept in a variable or a module constant and built elsewhere, `.format`, `%`,
and `execute` calls whose text comes from a helper. This test reads the source instead: the statement argument
of every driver call (asyncpg's `execute`/`executemany`/`fetch*`/`copy_*`, Alembic's `op.execute`, SQLAlchemy's
`text`/`exec_driver_sql`, psycopg/DB-API `cursor.execute`) must be a string literal, an f-string whose placeholders
are such constants (shared column lists), a name bound to one in the same module or function, or a loop variable
over a constant list of them (migrations); anything else must be listed in ALLOWED with the reason it is safe.

Column lists derived from code are constants too: the names in CODE_CONSTANTS (defined in, or imported from, the
module named there), a dict of constants (its keys), and `"<separator>".join(...)` of a constant list, or of
constant text per item of one (`", ".join(f"p.{name}" for name in POLICY_CONTENT_COLUMNS)`).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).parents[2]
PACKAGE = "src/aegis_pipeline/"
PACKAGES = ["src", "dags", "bench"]
SQL_CALLS = {"execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table", "copy_to_table",
             "copy_from_query", "exec_driver_sql", "text", "cursor_execute"}
# (file, function): why the text is not a constant and still cannot carry a value.
ALLOWED = {
    (PACKAGE + "stores/postgres.py", "ensure_database"):
        "CREATE DATABASE takes no parameters; the name is quote_ident'ed",
    (PACKAGE + "stores/postgres.py", "drop_database"):
        "DROP DATABASE takes no parameters; the name is quote_ident'ed",
    ("bench/cold_path.py", "baseline"): "the column list is cold_path.store's constant _POLICY_COLUMNS; values bound",
    (PACKAGE + "hot_path/broker_watch.py", "_reannounce_pages"):
        "one of the module's constant statements (CHANGED_POLICIES_SQL, SCORED_POLICIES_SQL, SYNC_RUNS_SQL), passed "
        "by _reannounce; values bound",
    (PACKAGE + "cold_path/lifecycle.py", "_archive"):
        "one of the module's two constant statements (ARCHIVE_CLOSED_SQL, ARCHIVE_WITHDRAWN_SQL), passed by "
        "apply_lifecycle; the date, batch size and source bound",
    (PACKAGE + "cold_path/retention.py", "_apply_rule"):
        "one of the module's STATEMENTS, built at import from its constant table names and predicates (_TABLES); "
        "the cutoff, keyset position and batch size bound",
    (PACKAGE + "stores/graph.py", "run"):
        "Cypher pass-through: sync/targets/graph.py writes constants, labels from its LINKS table, values bound as "
        "$parameters",
}
# (module, name): column lists computed from code, not from constants this check can follow; why they hold code,
# never input.
CODE_CONSTANTS = {
    ("aegis_pipeline.domain.policy", "POLICY_CONTENT_COLUMNS"):
        "the policy's content columns: the field names of the dataclass domain.policy.PolicyContent",
    ("aegis_pipeline.hot_path.store", "_INCOMING_COLUMNS"):
        "the upsert's typed column list: those field names, with PostgreSQL types mapped from their annotations",
}


def python_files() -> list[Path]:
    files: list[Path] = []
    for entry in PACKAGES:
        path = REPO / entry
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")) if path.is_dir() else [])
    return files


def _is_constant_text(node: ast.expr, constants: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes)
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # "..." "..." split over lines, or + of constants
        return _is_constant_text(node.left, constants) and _is_constant_text(node.right, constants)
    if isinstance(node, ast.JoinedStr):  # an f-string of constants only (placeholders naming constants)
        return all(isinstance(part, ast.Constant) or (isinstance(part, ast.FormattedValue) and part.format_spec is None
                                                       and _is_constant_text(part.value, constants))
                   for part in node.values)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)
            and len(node.args) == 1 and not node.keywords):  # "sep".join(constant list, or constant text per item)
        items = node.args[0]
        if isinstance(items, ast.GeneratorExp | ast.ListComp) and len(items.generators) == 1:
            loop = items.generators[0]
            return (isinstance(loop.target, ast.Name) and not loop.is_async
                    and (_is_constant_collection(loop.iter, constants)
                         or (isinstance(loop.iter, ast.Name) and loop.iter.id in constants))
                    and _is_constant_text(items.elt, constants | {loop.target.id}))
        return _is_constant_collection(items, constants) or (isinstance(items, ast.Name) and items.id in constants)
    return False


def _is_constant_collection(node: ast.expr, constants: set[str]) -> bool:
    if isinstance(node, ast.Dict):  # iterated (or unpacked with *), a dict gives its keys
        return all(key is not None and _is_constant_text(key, constants) and _is_constant_text(value, constants)
                   for key, value in zip(node.keys, node.values, strict=True))
    return isinstance(node, ast.List | ast.Tuple) and all(
        _is_constant_text(item, constants)
        or (isinstance(item, ast.Starred) and isinstance(item.value, ast.Name) and item.value.id in constants)
        for item in node.elts)


def _code_constants(tree: ast.Module, module: str) -> set[str]:
    """Names of CODE_CONSTANTS this module imports or defines."""
    imported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                for alias in node.names if (node.module, alias.name) in CODE_CONSTANTS}
    return imported | {name for owner, name in CODE_CONSTANTS if owner == module}


def _constant_names(scope: ast.AST, inherited: set[str]) -> set[str]:
    """Names assigned only string constants in `scope` (not descending into nested functions)."""
    names = set(inherited)
    assigned_otherwise: set[str] = set()
    for node in ast.walk(scope):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name):
                if value is not None and (_is_constant_text(value, names) or _is_constant_collection(value, names)):
                    names.add(target.id)
                else:
                    assigned_otherwise.add(target.id)
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            if isinstance(node.iter, ast.Name) and node.iter.id in names:
                names.add(node.target.id)
            else:
                assigned_otherwise.add(node.target.id)
    return names - (assigned_otherwise - inherited)


def violations(files: list[Path] | None = None, root: Path = REPO) -> list[str]:
    found: list[str] = []
    for path in python_files() if files is None else files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        assignments = [node for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)]
        relative = path.relative_to(root).as_posix()
        module = relative.removeprefix("src/").removesuffix(".py").replace("/", ".")
        module_constants = _constant_names(ast.Module(body=assignments, type_ignores=[]),
                                           _code_constants(tree, module))
        uses_sqlalchemy_text = any(isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
                                   and any(alias.name == "text" for alias in node.names) for node in ast.walk(tree))
        functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
        for function in functions:
            constants = _constant_names(function, module_constants)
            for call in ast.walk(function):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute | ast.Name)):
                    continue
                name = call.func.attr if isinstance(call.func, ast.Attribute) else call.func.id
                if name not in SQL_CALLS or not call.args:
                    continue
                if name == "text" and not (uses_sqlalchemy_text or _receiver(call) in {"sa", "sqlalchemy"}):
                    continue
                if name == "execute" and isinstance(call.func, ast.Attribute) and _is_not_sql(call.func.value):
                    continue
                if _is_constant_text(call.args[0], constants) or (relative, function.name) in ALLOWED:
                    continue
                found.append(f"{relative}:{call.lineno} {function.name}(): {name}({ast.unparse(call.args[0])[:80]})")
    return found


def _receiver(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name):
        return call.func.value.id
    return None


def _is_not_sql(receiver: ast.expr) -> bool:
    # concurrent.futures executors and the like also have `execute`-free APIs; asyncio loops have run_in_executor.
    return isinstance(receiver, ast.Name) and receiver.id in {"executor", "pool_executor"}


def test_every_sql_statement_is_a_constant_with_bound_parameters() -> None:
    assert python_files(), "no source files found"
    assert violations() == []


def test_the_check_catches_sql_built_from_values(tmp_path: Path) -> None:
    # The check itself: each of these would put a value inside the SQL text.
    source = '''
QUERY = "SELECT * FROM policies WHERE id = "
async def bad(connection, policy_id, table):
    await connection.fetch(QUERY + policy_id)
    await connection.execute(f"DELETE FROM {table}")
    statement = "UPDATE policies SET title = '%s'" % policy_id
    await connection.execute(statement)
    await connection.fetchval("SELECT {}".format(policy_id))
async def good(connection, policy_id):
    await connection.fetch(QUERY, policy_id)
    sql = "SELECT 1 WHERE $1::text IS NOT NULL"
    await connection.fetchval(sql, policy_id)
'''
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    found = violations([probe], root=tmp_path)
    assert [line.split(" ", 1)[0].rsplit(":", 1)[1] for line in found] == ["4", "5", "7", "8"], found


def test_column_lists_derived_from_code_are_constants_and_values_are_not(tmp_path: Path) -> None:
    source = '''
from aegis_pipeline.domain.policy import POLICY_CONTENT_COLUMNS
OWN = {"raw_data": "jsonb", "content_hash": "text"}
COLUMNS = ", ".join(f"p.{name}" for name in (*POLICY_CONTENT_COLUMNS, *OWN))
SET = ", ".join(f"{name} = EXCLUDED.{name}" for name in POLICY_CONTENT_COLUMNS if name != "external_id")
QUERY = f"SELECT {COLUMNS} FROM policies p"
async def good(connection):
    await connection.fetch(QUERY)
    await connection.execute(f"UPDATE policies SET {SET}")
async def bad(connection, names, value):
    await connection.fetch(", ".join(names))
    await connection.fetch("SELECT " + ", ".join(f"{name}" for name in names))
    await connection.fetch(", ".join(f"p.{name} = {value}" for name in POLICY_CONTENT_COLUMNS))
'''
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    found = violations([probe], root=tmp_path)
    assert [line.split(" ", 1)[0].rsplit(":", 1)[1] for line in found] == ["11", "12", "13"], found
