"""Follow one parameter through the code: how many modules ("rooms") a reader enters.

Usage (from the repository root)::

    python benchmarks/follow_parameter.py vanco_offline/commands/demo.py:run:args
    python benchmarks/follow_parameter.py vanco_offline/training.py:train:preset --path

A static reading, not a trace: starting at ``FILE:FUNCTION:PARAMETER``, every call in the
function's body (in source order) that is given the parameter, or a name computed from it,
is followed into the callee (a function or method of ``vanco_offline`` or ``vanco_pk`` that
the call resolves to through the module's imports, its own definitions or ``self``), with
the callee's matching parameter followed in turn, depth first, each (function, parameter)
once. Which names carry the parameter is the ``--reading``: ``parameter`` (the parameter and
its attributes only), ``start`` (also every name the starting function computes from it:
``table = builtin_cohort(args.patients)`` carries ``args`` on; the default) or ``derived``
(names computed from it in every function followed: the whole program a value touches).
The callees in the order a reader opens them give a path of modules; consecutive
calls inside one module are one **stay**, distinct modules are **rooms**, a stay in a room
already left is a **return**, and a **climb** is a call into a module of a higher layer
(``cli`` 0, ``commands`` 1, top-level modules 2, ``data``/``algos``/``ope``/``configs`` 3,
their subpackages 4, ``vanco_pk`` 5): a lower layer reaching back up.

What it cannot see: calls through objects whose type the code does not name (``x.method()``
for an ``x`` that is not ``self``), ``getattr`` dispatch and callbacks. It reads the same way
on every commit, so counts are comparable across commits, not with another tool's.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

READINGS = ("parameter", "start", "derived")
ROOTS = {"vanco_offline": Path("vanco_offline"), "vanco_pk": Path("envs/vanco_pk")}


def module_name(path: Path) -> str | None:
    for package, root in ROOTS.items():
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        parts = [package, *rel.with_suffix("").parts]
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return None


def layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] == "vanco_pk":
        return 5
    if module == "vanco_offline.cli":
        return 0
    if len(parts) >= 2 and parts[1] == "commands":
        return 1
    if len(parts) == 2:
        return 2
    return 3 if len(parts) == 3 else 4


@dataclass
class Module:
    name: str
    tree: ast.Module
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)  # "f" or "Class.f"
    classes: set[str] = field(default_factory=set)
    imports: dict[str, str] = field(default_factory=dict)  # local name -> "module" or "module:attr"


def imports_of(body: list[ast.stmt], package: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for node in body:
        for sub in ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else [node]:
            if isinstance(sub, ast.Import):
                for a in sub.names:
                    found[(a.asname or a.name).split(".")[0]] = (
                        a.name.split(".")[0] if not a.asname else a.name
                    )
            elif (isinstance(sub, ast.ImportFrom) and sub.module is not None) or (
                isinstance(sub, ast.ImportFrom) and sub.level
            ):
                base = sub.module or ""
                if sub.level:
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - sub.level + 1], base])
                for a in sub.names:
                    found[a.asname or a.name] = f"{base.strip('.')}:{a.name}"
    return found


class Index:
    def __init__(self) -> None:
        self.modules: dict[str, Module] = {}
        for root in ROOTS.values():
            for path in sorted(root.rglob("*.py")):
                name = module_name(path)
                if name is None or "tests" in path.parts:
                    continue
                tree = ast.parse(path.read_text(), str(path))
                mod = Module(name, tree)
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                mod.imports = imports_of(tree.body, package)
                for node in tree.body:
                    if isinstance(node, ast.FunctionDef):
                        mod.functions[node.name] = node
                    elif isinstance(node, ast.ClassDef):
                        mod.classes.add(node.name)
                        for item in node.body:
                            if isinstance(item, ast.FunctionDef):
                                mod.functions[f"{node.name}.{item.name}"] = item
                self.modules[name] = mod

    def resolve_symbol(self, module: str, name: str, depth: int = 0) -> tuple[str, str] | None:
        """(module, qualified name) of a function or class ``name`` seen from ``module``."""
        mod = self.modules.get(module)
        if mod is None or depth > 8:
            return None
        if name in mod.functions or name in mod.classes:
            return module, name
        target = mod.imports.get(name)
        if target is None or ":" not in target:
            return None
        src, attr = target.split(":")
        if f"{src}.{attr}" in self.modules:
            return None  # a module, not a function
        return self.resolve_symbol(src, attr, depth + 1)


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def target_names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


class Follower:
    def __init__(self, index: Index, reading: str = "start") -> None:
        self.index = index
        self.reading = reading
        self.seen: set[tuple[str, str, str]] = set()
        self.path: list[tuple[str, str]] = []  # (module, function) in reading order

    def callee(self, module: str, owner: str | None, func: ast.AST, local_imports: dict[str, str]):
        if isinstance(func, ast.Name):
            target = local_imports.get(func.id)
            if target and ":" in target:
                src, attr = target.split(":")
                return self.index.resolve_symbol(src, attr)
            return self.index.resolve_symbol(module, func.id)
        if isinstance(func, ast.Attribute):
            base = func.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls") and owner:
                key = f"{owner}.{func.attr}"
                if key in self.index.modules[module].functions:
                    return module, key
                return None
            if isinstance(base, ast.Name):
                target = local_imports.get(base.id) or self.index.modules[module].imports.get(base.id)
                if target is None:
                    # a class of this module, called through its name: Class.method
                    if base.id in self.index.modules[module].classes:
                        key = f"{base.id}.{func.attr}"
                        return (module, key) if key in self.index.modules[module].functions else None
                    return None
                if ":" in target:
                    src, attr = target.split(":")
                    dotted = f"{src}.{attr}"
                    if dotted in self.index.modules:
                        return self.index.resolve_symbol(dotted, func.attr)
                    resolved = self.index.resolve_symbol(src, attr)
                    if resolved and resolved[1] in self.index.modules[resolved[0]].classes:
                        key = f"{resolved[1]}.{func.attr}"
                        return (
                            (resolved[0], key) if key in self.index.modules[resolved[0]].functions else None
                        )
                    return None
                return self.index.resolve_symbol(target, func.attr) if target in self.index.modules else None
        return None

    def follow(self, module: str, qualname: str, params: set[str], depth: int = 0) -> None:
        mod = self.index.modules[module]
        fn = mod.functions.get(qualname)
        if fn is None:  # a class without __init__ (a dataclass): entered, not read further
            init = mod.functions.get(f"{qualname}.__post_init__")
            if init is None:
                return
            fn, qualname = init, f"{qualname}.__post_init__"
            params = {"self"}
        owner = qualname.split(".")[0] if "." in qualname else None
        local_imports = dict(mod.imports)
        local_imports.update(imports_of(fn.body, module.rpartition(".")[0]))
        tainted = set(params)
        derive = self.reading == "derived" or (self.reading == "start" and depth == 0)
        for _ in range(2 if derive else 0):  # names computed later from names computed earlier
            for node in ast.walk(fn):
                if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) and node.value is not None:
                    if names_in(node.value) & tainted:
                        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                        for t in targets:
                            tainted |= target_names(t)
                elif isinstance(node, ast.For | ast.comprehension) and names_in(node.iter) & tainted:
                    tainted |= target_names(node.target)
                elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                    if names_in(node.context_expr) & tainted:
                        tainted |= target_names(node.optional_vars)
        calls = sorted(
            (n for n in ast.walk(fn) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset)
        )
        for call in calls:
            given = [i for i, a in enumerate(call.args) if names_in(a) & tainted]
            given_kw = [k.arg for k in call.keywords if names_in(k.value) & tainted]
            if not given and not given_kw:
                continue
            resolved = self.callee(module, owner, call.func, local_imports)
            if resolved is None:
                continue
            cmod, cname = resolved
            target = self.index.modules[cmod].functions.get(cname) or self.index.modules[cmod].functions.get(
                f"{cname}.__init__"
            )
            follow_params: set[str] = set()
            if target is not None:
                positional = [a.arg for a in target.args.posonlyargs + target.args.args]
                if (
                    positional
                    and positional[0] in ("self", "cls")
                    and "." in (cname if cname in self.index.modules[cmod].functions else f"{cname}.__init__")
                ):
                    positional = positional[1:]
                for i in given:
                    if i < len(positional):
                        follow_params.add(positional[i])
                    elif target.args.vararg is not None:
                        follow_params.add(target.args.vararg.arg)
                for k in given_kw:
                    if k is None:
                        follow_params |= set(positional) | {a.arg for a in target.args.kwonlyargs}
                    elif k in positional or k in {a.arg for a in target.args.kwonlyargs}:
                        follow_params.add(k)
                    elif target.args.kwarg is not None:
                        follow_params.add(target.args.kwarg.arg)
            key = (cmod, cname, ",".join(sorted(follow_params)))
            if key in self.seen:
                continue
            self.seen.add(key)
            self.path.append((cmod, cname))
            if target is not None and cname in self.index.modules[cmod].functions:
                self.follow(cmod, cname, follow_params, depth + 1)
            elif target is not None:
                self.follow(cmod, f"{cname}.__init__", follow_params, depth + 1)
            else:
                self.follow(cmod, cname, follow_params, depth + 1)


def package_of(module: str) -> str:
    """The room of ``module`` when rooms are packages: ``vanco_pk``, or the first two parts."""
    parts = module.split(".")
    return "vanco_pk" if parts[0] == "vanco_pk" else ".".join(parts[:2])


def measure(start: str, reading: str = "start", by: str = "module") -> dict[str, object]:
    file, function, parameter = start.split(":")
    module = module_name(Path(file))
    if module is None:
        raise SystemExit(f"follow_parameter: {file} is not in vanco_offline or envs/vanco_pk")
    index = Index()
    if function not in index.modules[module].functions:
        raise SystemExit(f"follow_parameter: no function {function} in {file}")
    follower = Follower(index, reading)
    follower.path.append((module, function))
    follower.follow(module, function, {parameter})
    stays: list[str] = []
    for mod, _ in follower.path:
        room = package_of(mod) if by == "package" else mod
        if not stays or stays[-1] != room:
            stays.append(room)
    seen: set[str] = set()
    returns = climbs = 0
    for i, mod in enumerate(stays):
        returns += mod in seen
        seen.add(mod)
        if by == "module" and i and layer(mod) < layer(stays[i - 1]):
            climbs += 1
    return {"stays": stays, "rooms": len(seen), "returns": returns, "climbs": climbs, "path": follower.path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("start", nargs="+", help="FILE:FUNCTION:PARAMETER")
    parser.add_argument("--path", action="store_true", help="print the functions in reading order")
    parser.add_argument(
        "--reading",
        choices=READINGS,
        default="start",
        help="which names carry the parameter: 'parameter' (only itself and its attributes), "
        "'start' (also names computed from it in the starting function; default), 'derived' "
        "(names computed from it in every function followed)",
    )
    parser.add_argument(
        "--by",
        choices=("module", "package"),
        default="module",
        help="what a room is: a module (default) or a package (vanco_offline.data, vanco_offline.ope, "
        "..., vanco_pk; a top-level module is its own); climbs are counted by module only",
    )
    args = parser.parse_args(argv)
    for start in args.start:
        result = measure(start, args.reading, args.by)
        print(
            f"{start} ({args.reading}, by {args.by}): {len(result['stays'])} stays in "
            f"{result['rooms']} rooms, {result['returns']} returns, {result['climbs']} climbs back up"
        )
        if args.path:
            for mod, fn in result["path"]:
                print(f"  {mod}:{fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
