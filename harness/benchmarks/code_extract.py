"""Getting runnable code out of a chat reply, shared by the code benchmarks.

Steps, after EvalPlus's `sanitize` (Liu et al., 2023) which this follows in spirit:
1. find candidate code: fenced blocks (```python / ``` / an unterminated final fence, as a
   truncated reply leaves), else the reply itself when it parses as Python and contains a
   definition, an import or (for stdin programs) any statement;
2. pick the block that defines the wanted function/class, else the longest one that parses;
3. a block that does not parse is cut back line by line from the end until it does (truncated
   generations), and kept as is if nothing parses, so the sandbox reports a syntax error
   rather than the harness inventing code;
4. sanitise: keep imports, the wanted definition and the helpers, classes and constants it
   reaches; drop module-level tests, prints, asserts, input reading and `if __name__` blocks.
   Stdin programs (LiveCodeBench) are not sanitised: their module-level code *is* the program.

None means "no code found"; scorers report that outcome instead of running anything.
"""

from __future__ import annotations

import ast
import re
import textwrap

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_CODE_LANGS = {"", "python", "py", "python3", "py3"}


def fenced_blocks(text: str) -> list[str]:
    """Contents of ``` fences in order; a final fence left open counts up to the end."""
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in _CODE_LANGS]


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def _longest_parsing_prefix(code: str) -> str | None:
    lines = code.rstrip().split("\n")
    for end in range(len(lines), 0, -1):
        chunk = "\n".join(lines[:end])
        if chunk.strip() and _parses(chunk):
            return chunk
    return None


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", code, re.M) is not None


def _has_definitions(code: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom))
               for n in tree.body)


def extract_code(text: str, entry_point: str | None = None, program: bool = False) -> str | None:
    """The code in a reply, or None when there is none. `program`: a whole stdin/stdout
    program is wanted (any statements count as code)."""
    if not text or not text.strip():
        return None
    blocks = [b for b in fenced_blocks(text) if b.strip()]
    if not blocks:
        bare = textwrap.dedent(text).strip("\n")
        if _parses(bare) and (_has_definitions(bare) or (program and _looks_like_program(bare))):
            blocks = [bare]
        else:
            # Prose around unfenced code: start at the first line that opens code.
            m = re.search(r"^(?:from\s+\S+\s+import|import\s+\S|def\s+\w|class\s+\w|async\s+def\s)", text, re.M)
            if m is None:
                return None
            prefix = _longest_parsing_prefix(text[m.start():])
            if prefix is None or not _has_definitions(prefix):
                return None
            blocks = [prefix]
    if entry_point:
        defining = [b for b in blocks if _defines(b, entry_point)]
        if defining:
            blocks = defining
    parsing = [b for b in blocks if _parses(b)]
    if parsing:
        return max(parsing, key=len) if not entry_point else parsing[-1]
    fixed = [p for p in (_longest_parsing_prefix(b) for b in blocks) if p and (
        not entry_point or _defines(p, entry_point))]
    if fixed:
        return max(fixed, key=len)
    return blocks[-1]  # unparseable: let the sandbox report the syntax error


def _looks_like_program(code: str) -> bool:
    """A bare reply counts as a stdin program only if it does something a program does
    (reads input, prints, defines, imports), so a plain sentence that happens to parse
    ("Hello") is not mistaken for code."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return bool(names & {"input", "print", "open", "sys"}) or _has_definitions(code)


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.value.id for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}


def _defined_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def sanitize(code: str, entry_point: str | None = None) -> str:
    """Imports + the definitions `entry_point` reaches (all definitions when it is None or
    absent); module-level tests, prints and main blocks are dropped. Unparseable code comes
    back unchanged."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    imports, defs = [], {}
    order: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
            order.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or (
                isinstance(node, (ast.Assign, ast.AnnAssign)) and not _calls_io(node)):
            for name in _defined_names(node):
                defs[name] = node
            order.append(node)
    if entry_point and entry_point in defs:
        keep: set[int] = set()
        todo = [entry_point]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen or name not in defs:
                continue
            seen.add(name)
            node = defs[name]
            keep.add(id(node))
            todo.extend(_names_used(node) - seen)
        chosen = [n for n in order if id(n) in keep or n in imports]
    else:
        chosen = order
    lines = code.split("\n")

    def segment(n: ast.stmt) -> str:  # whole lines, decorators included (top-level: column 0)
        start = min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])])
        return "\n".join(lines[start - 1:n.end_lineno])

    return "\n\n".join(segment(n) for n in chosen) + "\n"


def _calls_io(node: ast.stmt) -> bool:
    """Module-level assignments that read input or print are part of a test script, not a helper."""
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("input", "print")
               for n in ast.walk(node))
