"""Every SQL statement the pipeline sends is a constant: values travel as bound parameters, never inside the text.

ruff's S608 flags string-built SQL only when the string itself looks like a query (`"SELECT ... " + x`,
f"DELETE FROM {t}"); it misses SQL kept in a variable or a module constant and built elsewhere, `.format`, `%`,
and `execute` calls whose text comes from a helper. This test reads the source instead: the statement argument
of every driver call (asyncpg's `execute`/`executemany`/`fetch*`/`copy_*`, Alembic's `op.execute`, SQLAlchemy's
`text`/`exec_driver_sql`, psycopg/DB-API `cursor.execute`) must be a string literal, an f-string whose placeholders
are such constants (shared column lists), a name bound to one in the same module or function, or a loop variable
over a constant list of them (migrations); anything else must be listed in ALLOWED with the reason it is safe.
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
    (PACKAGE + "stores/graph.py", "run"):
        "Cypher pass-through: sync/targets/graph.py writes constants, labels from its LINKS table, values bound as "
        "$parameters",
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
    return False


def _is_constant_collection(node: ast.expr, constants: set[str]) -> bool:
    return isinstance(node, ast.List | ast.Tuple) and all(_is_constant_text(item, constants) for item in node.elts)


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
        module_constants = _constant_names(ast.Module(body=assignments, type_ignores=[]), set())
        uses_sqlalchemy_text = any(isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
                                   and any(alias.name == "text" for alias in node.names) for node in ast.walk(tree))
        relative = path.relative_to(root).as_posix()
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
