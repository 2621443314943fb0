"""The Kaggle notebooks: each runs top to bottom on a CPU with smoke parameters and holds no logic of its own.

Execution: each notebook runs in a real Jupyter kernel through nbclient, with a cell that overrides the
Kaggle defaults with smoke values (SmolLM2-135M, one or two steps, one episode) inserted right after its
``parameters`` cell, the way papermill injects parameters. The notebooks chain like they do on Kaggle: 02
trains GRPO from the adapter 01 wrote, 03 evaluates the adapter 02 wrote, all in one temporary directory
with its own MLflow database. A failing cell raises ``CellExecutionError`` and fails the test.

Content rules (:func:`notebook_problems`), so that a notebook is a driver of the package and not a second
implementation or a place where results live:

- committed notebooks have no outputs and no execution counts;
- exactly one code cell is tagged ``parameters``; it holds only ``NAME = <literal>`` lines;
- every code cell follows a text cell that says what the step does and how long it takes;
- other code cells hold only imports (of the package and of ``json``, ``os``, ``pathlib``, ``shutil``,
  ``IPython``), assignments, calls into the package (``training``, ``eval``, ``llm_agent``, ``market_env``,
  ``data``), ``assert <package call> == 0`` on an entry point's return code, an ``if <PARAMETER>:`` guard,
  and the display of files the package wrote (``print``, ``display``, ``Image``, ``Markdown``,
  ``Path(...).read_text()``, ``json.loads``, ``os.listdir``, ``sorted``, ``shutil.copytree``); a ``for`` loop
  is allowed only over a parameter and only to ``display`` files. No ``def``, ``class``, ``lambda``,
  comprehension, arithmetic, comparison, other loop or ``try``; no number outside the parameters cell;
- text cells, code comments and strings hold no result: no decimal number (unless it is a size or a
  duration, like "1.5 hours" or "5.5 GB") and no percentage;
- the only ``!`` or ``%`` lines are ``pip install`` (the install step); they are replaced by ``pass`` before
  the cell is parsed.
Runtime of the slow tests: about 3 minutes on 2 CPU cores shared with another training job (measured: 80 s,
39 s and 47 s for the three notebooks).
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import sys
import time
import tokenize
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
KAGGLE = REPO / "kaggle"
NOTEBOOKS = ("01_sft.ipynb", "02_grpo.ipynb", "03_evaluate.ipynb")
CELL_TIMEOUT_S = 1800  # one cell; generous because CI machines are often shared
# One torch thread in the kernel. On a 2-core machine that another job also uses, two threads spin at OpenMP
# barriers waiting for each other: a SmolLM2 forward pass of a 416-token prompt took 7.4 s with two threads
# and 1.0 s with one (measured), and the three notebooks 21 minutes instead of 3.
KERNEL_ENV = {"OMP_NUM_THREADS": "1"}

PACKAGES = {"training", "eval", "llm_agent", "market_env", "data"}
HELPER_MODULES = {"json", "os", "pathlib", "shutil", "IPython"}
HELPER_CALLS = {
    "print",
    "display",
    "str",
    "sorted",
    "Image",
    "Markdown",
    "Path",
    "json.loads",
    "os.listdir",
    "shutil.copytree",
}
READ_METHODS = {"read_text"}  # methods allowed on the result of a call: Path(...).read_text()
FORBIDDEN = {
    ast.FunctionDef: "a function definition (def)",
    ast.AsyncFunctionDef: "a function definition (def)",
    ast.ClassDef: "a class definition",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.BinOp: "arithmetic",
    ast.BoolOp: "a boolean expression",
    ast.UnaryOp: "arithmetic",
    ast.IfExp: "a conditional expression",
    ast.Compare: "a comparison",
    ast.NamedExpr: "an assignment expression",
    ast.Slice: "a slice",
    ast.Await: "an await",
    ast.Yield: "a yield",
    ast.YieldFrom: "a yield",
}
NUMERIC_TEXT = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?%?")
UNITS = r"(?:GB|GiB|MB|MiB|KB|hours?|h|minutes?|min|seconds?|s)\b"
RESULT_NUMBER = re.compile(
    rf"\d+(?:\.\d+)?\s*%"  # a percentage
    rf"|(?<![\w.])\d*\.\d+(?![\w.])(?!(?:-[\d.]+)?\s*{UNITS})"  # a decimal that is not a size or a duration
)
PIP_INSTALL = re.compile(r"[!%]pip install ")
DURATION = re.compile(r"\b(instant(ly)?|seconds?|minutes?|hours?)\b", re.IGNORECASE)


# ------------------------------------------------------------------------------------------------ checker
def parameters_index(nb: nbformat.NotebookNode) -> int:
    """Index of the one cell tagged ``parameters`` (papermill's convention)."""
    found = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(found) != 1:
        raise ValueError(f"expected exactly one cell tagged 'parameters', found {len(found)}")
    return found[0]


def parameter_names(source: str) -> set[str]:
    targets = [target for node in ast.parse(source).body for target in getattr(node, "targets", [])]
    return {target.id for target in targets if isinstance(target, ast.Name)}


def python_source(cell_source: str) -> str:
    """The cell with each ``!`` shell or ``%`` magic line replaced by ``pass`` (same indentation).

    Raises:
        ValueError: a shell or magic line that is not ``pip install`` (it could run anything).
    """
    lines = []
    for line in cell_source.splitlines():
        stripped = line.lstrip()
        if stripped[:1] in ("!", "%") and not PIP_INSTALL.match(stripped):
            raise ValueError(f"a shell or magic line other than pip install: {stripped!r}")
        lines.append(line[: len(line) - len(stripped)] + "pass" if stripped[:1] in ("!", "%") else line)
    return "\n".join(lines)


def result_numbers(text: str) -> list[str]:
    return [match.group(0) for match in RESULT_NUMBER.finditer(text)]


def comments(source: str) -> str:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return "\n".join(token.string for token in tokens if token.type == tokenize.COMMENT)


def _is_number(value: object) -> bool:
    """An int or float, or a string that reads as one ("300", "0.5", "12%"); not a bool."""
    if isinstance(value, str):
        return NUMERIC_TEXT.fullmatch(value.strip()) is not None
    return isinstance(value, (int, float, complex)) and not isinstance(value, bool)


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name; None when the chain starts elsewhere."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


class CellChecker:
    """The rules for one code cell that is not the parameters cell."""

    def __init__(self, package_names: set[str]) -> None:
        self.package_names = package_names
        self.problems: list[str] = []

    def check(self, source: str) -> list[str]:
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            return [f"does not parse: {error.msg} (line {error.lineno})"]
        for statement in tree.body:
            self.statement(statement)
        return self.problems

    def problem(self, node: ast.AST, what: str) -> None:
        self.problems.append(f"line {getattr(node, 'lineno', '?')}: {what}")

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] not in PACKAGES | HELPER_MODULES:
                    self.problem(node, f"an import of {module!r}, which is neither the package nor a helper")
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                environ = isinstance(target, ast.Subscript) and _dotted(target.value) == "os.environ"
                if not (isinstance(target, ast.Name) or environ):
                    self.problem(node, "an assignment to something other than a name or os.environ[...]")
            self.expression(node.value)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            self.expression(node.value)
        elif isinstance(node, ast.Assert):
            self.return_code_check(node)
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and not node.orelse:
            for inner in node.body:
                self.statement(inner)
        elif isinstance(node, ast.For):
            self.display_loop(node)
        elif not isinstance(node, ast.Pass):
            self.problem(node, f"{FORBIDDEN.get(type(node), f'a {type(node).__name__} statement')}")

    def return_code_check(self, node: ast.Assert) -> None:
        """``assert <package entry point>(...) == 0``: the one comparison a notebook needs."""
        test = node.test
        ok = (
            isinstance(test, ast.Compare)
            and isinstance(test.ops[0], ast.Eq)
            and len(test.ops) == 1
            and isinstance(test.left, ast.Call)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == 0
            and node.msg is None
        )
        if not ok:
            self.problem(node, "an assert other than `assert <package call> == 0`")
            return
        self.expression(test.left)

    def display_loop(self, node: ast.For) -> None:
        """``for task in TASKS: display(...)``: showing one file per task the package wrote."""
        calls = [s.value for s in node.body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)]
        ok = (
            isinstance(node.target, ast.Name)
            and isinstance(node.iter, ast.Name)
            and not node.orelse
            and len(calls) == len(node.body)
            and all(_dotted(call.func) == "display" for call in calls)
        )
        if not ok:
            self.problem(node, "a loop (only `for x in PARAMETER: display(...)` is allowed)")
            return
        for call in calls:
            self.expression(call)

    def expression(self, node: ast.expr) -> None:
        for child in ast.walk(node):
            if type(child) in FORBIDDEN:
                self.problem(child, FORBIDDEN[type(child)])
            elif isinstance(child, ast.Constant) and _is_number(child.value):
                self.problem(child, f"the number {child.value!r} (numbers belong in the parameters cell)")
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                for number in result_numbers(child.value):
                    self.problem(child, f"a result in a string: {number!r}")
            elif isinstance(child, ast.Call):
                self.call(child)

    def call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        if name is None:
            method_on_call = isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call)
            if not (method_on_call and node.func.attr in READ_METHODS):
                self.problem(node, "a call that is neither into the package nor a display helper")
        elif name.split(".")[0] not in self.package_names and name not in HELPER_CALLS:
            self.problem(node, f"a call of {name}, which is neither the package nor a display helper")


def imported_package_names(cells: list[nbformat.NotebookNode]) -> set[str]:
    """The names the notebook's imports bind to modules and objects of the package."""
    names = set()
    for cell in cells:
        try:
            tree = ast.parse(python_source(cell.source))
        except (ValueError, SyntaxError):
            continue  # reported where the cell is checked
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                names |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                names |= {
                    (alias.asname or alias.name).split(".")[0]
                    for alias in node.names
                    if alias.name.split(".")[0] in PACKAGES
                }
    return names


def parameter_problems(source: str) -> list[str]:
    problems = []
    for node in ast.parse(source).body:
        targets = getattr(node, "targets", [])
        if not isinstance(node, ast.Assign) or len(targets) != 1 or not isinstance(targets[0], ast.Name):
            problems.append(f"line {node.lineno}: the parameters cell holds only `NAME = <literal>` lines")
            continue
        if not targets[0].id.isupper():
            problems.append(f"line {node.lineno}: parameter {targets[0].id!r} is not UPPER_CASE")
        try:
            ast.literal_eval(node.value)
        except ValueError:
            problems.append(f"line {node.lineno}: {targets[0].id} is not a literal")
    return problems


def notebook_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Every way the notebook breaks the content rules of this module's docstring, as messages."""
    try:
        params = parameters_index(nb)
    except ValueError as error:
        return [str(error)]
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    names = imported_package_names(code_cells)
    problems = []
    for i, cell in enumerate(nb.cells):
        where = f"cell {i}"
        if cell.cell_type == "markdown":
            problems += [f"{where}: a result in the text: {n!r}" for n in result_numbers(cell.source)]
            continue
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            problems.append(f"{where}: committed with outputs or an execution count; clear them")
        before = nb.cells[i - 1] if i > 0 else None
        if before is None or before.cell_type != "markdown" or not DURATION.search(before.source):
            problems.append(f"{where}: no text cell before it that says what it does and how long it takes")
        if i == params:
            problems += [f"{where}: {p}" for p in parameter_problems(cell.source)]
            continue
        try:
            source = python_source(cell.source)
        except ValueError as error:
            problems.append(f"{where}: {error}")
            continue
        problems += [f"{where}: {p}" for p in CellChecker(names).check(source)]
        problems += [f"{where}: a result in a comment: {n!r}" for n in result_numbers(comments(source))]
    return problems


# ---------------------------------------------------------------------------- the checker on the notebooks
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_a_driver_of_the_package_without_results(name):
    nb = nbformat.read(KAGGLE / name, as_version=4)
    nbformat.validate(nb)
    assert notebook_problems(nb) == []


def planted(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A minimal notebook that follows the rules, with ``cells`` appended."""
    new_md, new_code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    return nbformat.v4.new_notebook(
        cells=[
            new_md("# Planted\n\nA notebook the checker must judge."),
            new_md("## Parameters\n\nInstant."),
            new_code('STEPS = 2\nMODEL = "smollm2-135m"\nINSTALL = False', metadata={"tags": ["parameters"]}),
            new_md("## Install\n\nA few minutes; skipped without INSTALL."),
            new_code('if INSTALL:\n    %pip install -q "nifty-rl"'),
            new_md("## Train\n\nAbout a minute."),
            new_code(
                "from pathlib import Path\n\nfrom IPython.display import Image, display\n\n"
                "from eval import tracking\nfrom training.sft import trainer as sft\n\n"
                'assert sft.main(["--model", MODEL, "--max-steps", str(STEPS)]) == 0\n'
                'display(Image(filename=f"{MODEL}/curve.png"))\ndisplay(tracking.load_runs())'
            ),
            *cells,
        ]
    )


def step(source: str, text: str = "## Step\n\nA few seconds.") -> list[nbformat.NotebookNode]:
    return [nbformat.v4.new_markdown_cell(text), nbformat.v4.new_code_cell(source)]


def test_the_checker_accepts_a_notebook_that_only_drives_the_package():
    assert notebook_problems(planted()) == []
    assert notebook_problems(planted(*step("for task in TASKS:\n    display(Image(filename=task))"))) == []


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        # logic of its own instead of a call into the package
        (step("def score(navs):\n    return navs[-1] / navs[0]"), "function definition"),
        (step("class Agent:\n    pass"), "class definition"),
        (step("SCORES = [str(s) for s in STEPS]"), "comprehension"),
        (step("for run in RUNS:\n    print(run)"), "a loop"),
        (step("while True:\n    pass"), "While"),
        (step("MEAN = tracking.load_runs().mean()"), "a call that is neither"),
        (step("import numpy as np\nRETURNS = np.diff(NAV)"), "import of 'numpy'"),
        (step("TOTAL = STEPS * 2"), "arithmetic"),
        (step("if STEPS > 1:\n    print(MODEL)"), "If"),
        (step("try:\n    sft.main([])\nexcept Exception:\n    pass"), "Try"),
        (step('assert sft.main(["--max-steps", str(STEPS)]) > 0'), "an assert other than"),
        # hard-coded results
        (step("BEST_SCORE = 0.612"), "the number 0.612"),
        (step('assert sft.main(["--max-steps", "300"]) == 0'), "the number '300'"),
        (step('!python -c "print(sum(range(3)))"'), "a shell or magic line other than pip install"),
        (step("%run my_analysis.py"), "a shell or magic line other than pip install"),
        (step("print(MODEL)  # the SFT agent scores 0.61 here"), "a result in a comment: '0.61'"),
        (step('print("the SFT agent scores", "0.61 [0.55, 0.66]")'), "a result in a string: '0.61'"),
        (step("print(MODEL)", "## Result\n\nInstant. The SFT agent scored 0.612 on the test."), "0.612"),
        (step("print(MODEL)", "## Result\n\nInstant. GRPO beat hold by 12% on the hard task."), "12%"),
        # structure
        ([nbformat.v4.new_code_cell("print(MODEL)")], "no text cell before it"),
        (step("print(MODEL)", "## Show\n\nShows the model."), "no text cell before it"),
    ],
)
def test_the_checker_rejects_logic_and_hard_coded_results(cells, expected):
    problems = notebook_problems(planted(*cells))
    assert any(expected in p for p in problems), problems


def test_the_checker_rejects_outputs_and_a_missing_or_loose_parameters_cell():
    nb = planted(*step("print(MODEL)"))
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="0.612\n")]
    nb.cells[-1].execution_count = 3
    assert any("outputs" in p for p in notebook_problems(nb))

    nb = planted()
    nb.cells[2].metadata = {}
    assert notebook_problems(nb) == ["expected exactly one cell tagged 'parameters', found 0"]

    nb = planted()
    nb.cells[2].source += "\nSTEPS_X2 = STEPS * 2\nprint(STEPS)\nlower = 1"
    problems = notebook_problems(nb)
    assert any("STEPS_X2 is not a literal" in p for p in problems), problems
    assert any("only `NAME = <literal>` lines" in p for p in problems), problems
    assert any("'lower' is not UPPER_CASE" in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("about 20 minutes on a T4, 5.5 GB of memory, 1.5 hours", []),  # durations and sizes are fine
        ("roughly 3.5-5 hours, 5-6.5 h", []),  # and their ranges
        ("DeepSeek-R1-Distill-Qwen-7B and Qwen2.5-0.5B under env 2.0.0", []),  # names and versions
        ("scored 0.532 [0.41, 0.60]", ["0.532", "0.41", "0.60"]),
        ("a return of +3.1% and 95% of episodes", ["3.1%", "95%"]),
    ],
)
def test_result_numbers_in_text(text, found):
    assert result_numbers(text) == found


# ------------------------------------------------------------------------------------- executing on a CPU
def execute(name: str, workdir: Path, overrides: dict) -> nbformat.NotebookNode:
    """Run a Kaggle notebook in ``workdir`` with ``overrides`` injected after its parameters cell."""
    nb = nbformat.read(KAGGLE / name, as_version=4)
    index = parameters_index(nb)
    unknown = set(overrides) - parameter_names(nb.cells[index].source)
    assert not unknown, f"smoke values for parameters {name} does not have: {sorted(unknown)}"
    lines = [f"{key} = {value!r}" for key, value in overrides.items()]
    # the kernel is this interpreter (the venv's), not some other python3 on the PATH
    lines += ["import sys", f"assert sys.executable == {sys.executable!r}, sys.executable"]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)
    return run(nb, workdir, name)


def run(nb: nbformat.NotebookNode, workdir: Path, name: str) -> nbformat.NotebookNode:
    """Execute every cell in a real kernel with ``workdir`` as its working directory."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    started = time.perf_counter()
    try:
        client.execute(env=os.environ | KERNEL_ENV)
    finally:
        nbformat.write(nb, workdir / name)  # the executed copy, to read after a failure
        print(f"\n{name}: {time.perf_counter() - started:.0f} s")
    return nb


@pytest.mark.slow
def test_a_failing_cell_fails_the_run(tmp_path):
    from nbclient.exceptions import CellExecutionError

    # train-sft returns 2 (a clear error, no traceback) when its data directory is missing
    nb = planted(*step('assert sft.main(["--data", f"{MODEL}/missing"]) == 0'))
    nb.cells[6].source = "from training.sft import trainer as sft"  # the planted training step would run too
    with pytest.raises(CellExecutionError, match="AssertionError"):
        run(nb, tmp_path, "failing.ipynb")
    executed = nbformat.read(tmp_path / "failing.ipynb", as_version=4)
    assert "does not exist" in outputs_text(executed)


def common(workdir: Path, notebook: str) -> dict:
    """Smoke values every notebook shares. Each logs to its own MLflow database, as on Kaggle, where each
    notebook's ``mlruns.db`` lives in its own output."""
    return {
        "OUT": str(workdir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / notebook.replace('.ipynb', '.db')}",
        "INSTALL": False,
        "QUANTIZATION": [],
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kaggle")


@pytest.fixture(scope="module")
def sft_notebook(workdir: Path) -> nbformat.NotebookNode:
    smoke = {
        "MODEL": "smollm2-135m",
        "PROFILE": "cpu",
        "EASY_EXAMPLES": 8,
        "PORTFOLIO_EXAMPLES": 0,
        "VAL_EXAMPLES": 2,
        "SFT_STEPS": 1,
        "SAVE_STEPS": 1,
        "SFT_ARGS": ["--batch-size", "1", "--gradient-accumulation-steps", "1", "--eval-examples", "1"],
        "EVAL_EPISODES": 1,
        "MAX_NEW_TOKENS": 8,
    }
    return execute("01_sft.ipynb", workdir, common(workdir, "01_sft.ipynb") | smoke)


@pytest.fixture(scope="module")
def grpo_notebook(workdir: Path, sft_notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    smoke = {
        "MODEL": "smollm2-135m",
        "PROFILE": "cpu",
        "SFT_ADAPTER": str(workdir / "sft" / "adapter"),
        "FIRST_SESSION_STEPS": 1,
        "GRPO_STEPS": 2,
        "SAVE_STEPS": 1,
        "EVAL_EVERY": 0,
        "EVAL_EPISODES": 0,  # a val evaluation is 20 generations per episode: the unit tests cover it
        "PROMPT_EPISODES": 1,
        "GRPO_ARGS": [
            *("--prompt-stride", "20", "--experts", "rsi", "--num-generations", "2"),
            *("--prompts-per-step", "1", "--max-completion-length", "8"),
        ],
    }
    return execute("02_grpo.ipynb", workdir, common(workdir, "02_grpo.ipynb") | smoke)


@pytest.fixture(scope="module")
def evaluate_notebook(workdir: Path, grpo_notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    smoke = {
        # the rule agents, PPO, and one LLM agent through the adapter chain (SFT, then GRPO)
        "AGENTS": [
            *("hold", "buy-and-hold", "random", "rsi", f"ppo:{workdir / 'ppo'}"),
            f"llm:smollm2-135m@{workdir / 'grpo' / 'final'}",
        ],
        "TASKS": ["easy"],
        "EPISODES": 1,
        "MAX_NEW_TOKENS": 8,
        "PPO_TIMESTEPS": 800,
        "PPO_ARGS": [
            *("--n-envs", "4", "--n-steps", "100", "--batch-size", "100"),
            *("--eval-every", "400", "--eval-episodes", "2"),
        ],
    }
    return execute("03_evaluate.ipynb", workdir, common(workdir, "03_evaluate.ipynb") | smoke)


def outputs_text(nb: nbformat.NotebookNode) -> str:
    """Printed text and the plain-text form of displayed objects (rich prints tables as display data)."""
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.slow
def test_sft_notebook_runs_on_cpu_and_leaves_the_adapter(sft_notebook, workdir):
    import mlflow

    assert (workdir / "sft-data" / "train.jsonl").is_file()
    assert (workdir / "sft" / "adapter" / "adapter_model.safetensors").is_file()
    results = (workdir / "sft-eval" / "results.json").read_text()
    assert "smollm2-135m" in results and f"llm:smollm2-135m@{workdir / 'sft' / 'adapter'}" in results
    assert images(sft_notebook) == 2
    assert "easy task, val split, n = 1 paired episodes" in outputs_text(sft_notebook)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / '01_sft.db'}")
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    assert len(client.search_runs([experiments["nifty-rl-sft"]])) == 1
    # zero-shot and SFT, with hold, buy-and-hold and random on the same episodes beside them
    assert len(client.search_runs([experiments["nifty-rl-eval"]])) == 5


@pytest.mark.slow
def test_grpo_notebook_trains_then_resumes_to_the_total_steps(grpo_notebook, workdir):
    grpo = workdir / "grpo"
    state = json.loads((grpo / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2], "the resume cell went on"
    assert (grpo / "final" / "adapter_model.safetensors").is_file()
    assert images(grpo_notebook) == 1  # the reward curve


@pytest.mark.slow
def test_evaluate_notebook_compares_every_agent_across_env_versions(evaluate_notebook, workdir):
    results = json.loads((workdir / "eval" / "results.json").read_text())["results"]
    agents = {(r["agent"], r["env_version"]) for r in results}
    assert {a for a, _ in agents} >= {"hold", "buy-and-hold", "random", "rsi"}
    assert {v for _, v in agents} == {"1.0.0", "2.0.0"}
    assert len(agents) == 2 * 6
    text = outputs_text(evaluate_notebook)
    # the compare table's title wraps at the console width and carries ANSI styles
    words = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).replace("│", " ").split())
    assert "easy task" in words and "latest run per cell" in words
    assert "env 1.0.0" in words and "env 2.0.0" in words
    assert images(evaluate_notebook) == 3  # the PPO learning curve, equity curves, scores
