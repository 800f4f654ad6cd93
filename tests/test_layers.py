"""The library's shape: layers that point one way, read from every import in the code (inside functions too)."""

import ast
import subprocess
import sys

from utils import REPO_ROOT

# Bottom to top. A module imports modules of lower layers, and, in an ordered layer, the modules listed before it in
# its own; the modules of a layer of siblings never import each other. Scripts import anything; nothing imports them.
LAYERS = [
    ("core", "ordered", ["__init__", "prompts", "grading", "stats", "checks", "named_models", "runtime", "session",
                         "runs", "rewards", "data", "logs"]),
    ("config", "ordered", ["config", "preflight", "experiments"]),
    ("model", "ordered", ["model_cache", "cpu_attention", "model"]),
    ("generation", "ordered", ["generation"]),
    ("evaluation", "siblings", ["evaluate", "sampled", "harness"]),
    ("callbacks", "ordered", ["callbacks"]),
    ("training", "ordered", ["trainer"]),
    ("analysis", "siblings", ["analysis", "study", "charts", "reward_lab"]),
    ("orchestration", "ordered", ["train"]),
    ("scripts", "scripts", ["scripts.__init__", "scripts.pipeline", "scripts.bench", "scripts.report",
                            "scripts.lora_lr", "scripts.cpu_study", "scripts.cpu_floors", "scripts.cpu_bench",
                            "scripts.qwen_study", "scripts.hosted"]),
]  # fmt: skip
LIBRARY_LINES = 6100
MODULE_LINES = 400


def position(module: str) -> tuple[int, int]:
    return next((i, names.index(module)) for i, (_, _, names) in enumerate(LAYERS) if module in names)


def kit_imports(path) -> set[str]:
    """The kit modules a file imports, at its top or inside functions (``scripts.<name>`` for the programs)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "utils":
            package = ".".join(node.module.split(".")[1:])  # "", "runs", "scripts", "scripts.report"
            folder = REPO_ROOT / "utils" / package.replace(".", "/")
            named = {f"{package}.{a.name}".lstrip(".") for a in node.names if (folder / f"{a.name}.py").exists()}
            if named:  # from utils import runs; from utils.scripts import cpu_study
                found |= named
            elif package:  # from utils.runs import ...; from utils.scripts.report import ...
                found.add("scripts.__init__" if package == "scripts" else package)
            else:  # from utils import REPO_ROOT
                found.add("__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("utils.")}
    return found


def modules() -> dict:
    library = {path.stem: path for path in sorted((REPO_ROOT / "utils").glob("*.py"))}
    scripts = {f"scripts.{path.stem}": path for path in sorted((REPO_ROOT / "utils" / "scripts").glob("*.py"))}
    return {**library, **scripts}


def test_every_module_has_a_layer_and_every_layer_module_exists():
    declared = [name for _, _, names in LAYERS for name in names]
    assert sorted(modules()) == sorted(declared)


def test_every_import_points_down_and_nothing_imports_a_script():
    wrong = []
    for module, path in modules().items():
        (layer, order), kind = position(module), LAYERS[position(module)[0]][1]
        for imported in kit_imports(path) - {module}:
            other_layer, other_order = position(imported)
            same_layer_allowed = kind == "scripts" or (kind == "ordered" and other_order < order)
            if other_layer > layer or (other_layer == layer and not same_layer_allowed):
                wrong.append(f"{module} ({LAYERS[layer][0]}) imports {imported} ({LAYERS[other_layer][0]})")
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_circle():
    graph = {module: kit_imports(path) - {module} for module, path in modules().items()}
    visiting, done = set(), set()

    def visit(module, trail):
        assert module not in visiting, f"import circle: {' -> '.join(trail + [module])}"
        if module in done:
            return
        visiting.add(module)
        for imported in graph[module]:
            visit(imported, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        visit(module, [])


def test_the_library_is_small_and_no_module_is_long():
    lines = {m: len(p.read_text().splitlines()) for m, p in modules().items()}
    library = {m: n for m, n in lines.items() if LAYERS[position(m)[0]][1] != "scripts"}
    long = {m: n for m, n in lines.items() if n > MODULE_LINES}
    assert not long, f"modules over {MODULE_LINES} lines: {long}"
    assert sum(library.values()) <= LIBRARY_LINES, f"the library has {sum(library.values())} lines"


def test_a_reward_cell_imports_neither_torch_nor_trl():
    code = "import sys, utils.rewards, utils.prompts; print(sorted({'torch', 'trl'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
