"""Every Python example in README.md and docs/*.md runs, on both cores, against a real beanstalkd.

The rules, for whoever writes an example:

- Each fenced block whose language is ``python`` (or ``py``, ``python3``) is run; other
  blocks (``sh``, plain text, ``pycon``) are not. A block that cannot run on its own (a
  fragment) is marked with the HTML comment ``<!-- no-test -->`` on the line before its
  opening fence (blank lines between are allowed).
- The blocks of one file run in order, in one namespace (a later block may use the names of
  an earlier one), in a fresh Python process, against a fresh, empty beanstalkd of their own.
- Examples connect to ``localhost`` port 11300, as a reader would (``Connection()``,
  ``Connection(host="localhost", port=11300)``, ...): the runner resolves that address to the
  test server (``socket.getaddrinfo`` is wrapped in the example process), so every front end
  that resolves the name reaches it. Other addresses are not redirected.
- An example must finish by itself (no endless worker loops); each file has ``TIMEOUT`` seconds.

Run as a script (``python test_examples.py --run FILE PORT``), this module is the runner.
"""

import os
import re
import subprocess
import sys
from typing import Dict, List, NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_TEST = "<!-- no-test -->"
LANGUAGES = {"python", "py", "python3"}
TIMEOUT = 120
EXAMPLE_PORT = 11300
EXAMPLE_HOSTS = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


class Block(NamedTuple):
    path: str      # relative to ROOT
    line: int      # 1-based line of the first code line
    code: str
    skipped: bool  # marked <!-- no-test -->


def markdown_files() -> List[str]:
    """README.md and every Markdown page under docs/ (relative paths, sorted)."""
    found = []
    if os.path.exists(os.path.join(ROOT, "README.md")):
        found.append("README.md")
    docs = os.path.join(ROOT, "docs")
    for dirpath, dirnames, filenames in os.walk(docs):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        for name in sorted(filenames):
            if name.endswith(".md"):
                found.append(os.path.relpath(os.path.join(dirpath, name), ROOT))
    return found


def extract(path: str, text: str) -> List[Block]:
    """The fenced code blocks of ``text`` in the languages we run.

    CommonMark fences: three or more backticks or tildes, closed by a fence of the same
    character at least as long; the block's indentation (inside a list item) is removed; an
    unclosed fence runs to the end of the file."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m.group("indent").expandtabs()), m.group("fence")
        info = m.group("info").strip()
        language = info.split()[0].lower() if info else ""
        if language.startswith("{"):    # MyST directive ({code-block} python): its argument
            parts = info.split()
            language = parts[1].lower() if len(parts) > 1 else ""
        start = i + 1
        j = start
        closing = re.compile(r"^[ \t]*%s%s*[ \t]*$" % (re.escape(fence), re.escape(fence[0])))
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        if language in LANGUAGES:
            body = [line[indent:] if line[:indent].strip() == "" else line.lstrip()
                    for line in lines[start:j]]
            first = start + 1
            if language != info.split()[0].lower():     # directive: drop its :option: lines
                while body and body[0].startswith(":"):
                    body.pop(0)
                    first += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            skipped = k >= 0 and lines[k].strip() == NO_TEST
            blocks.append(Block(path, first, "\n".join(body) + "\n", skipped))
        i = j + 1
    return blocks


def all_blocks() -> Dict[str, List[Block]]:
    result = {}
    for path in markdown_files():
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            blocks = extract(path, f.read())
        if blocks:
            result[path] = blocks
    return result


# -- the runner (in the example's own process) -------------------------------------------

def redirect_examples_to(port: int) -> None:
    """Resolve localhost:11300 (the examples' address) to 127.0.0.1:``port``."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, service, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host in EXAMPLE_HOSTS and str(service) == str(EXAMPLE_PORT):
            host, service = "127.0.0.1", port
        return real(host, service, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


def run_file(path: str, port: int) -> int:
    import traceback

    redirect_examples_to(port)
    namespace: dict = {"__name__": "__example__"}
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        blocks = extract(path, f.read())
    for block in blocks:
        if block.skipped:
            continue
        where = "%s:%d" % (block.path, block.line)
        print("--- %s" % where, flush=True)
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print("EXAMPLE FAILED: the block at %s" % where, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--run"]:
    sys.exit(run_file(sys.argv[2], int(sys.argv[3])))


# -- the tests ------------------------------------------------------------------------------

import pytest  # noqa: E402

import beanstalkc_fast  # noqa: E402
from conftest import free_port, load_core, start_beanstalkd, stop_beanstalkd  # noqa: E402

BLOCKS = all_blocks()
RUN_FILES = [path for path, blocks in BLOCKS.items() if any(not b.skipped for b in blocks)]
needs_docs = pytest.mark.skipif(not BLOCKS, reason="README.md and docs/ not found "
                                "(tests copied out of the source tree)")


def test_extraction_rules():
    text = "\n".join([
        "```python", "a = 1", "```",
        "<!-- no-test -->", "", "```python", "fragment(", "```",
        "```sh", "pip install .", "```",
        "- item", "", "  ````py", "  b = 2", "  ```", "  c = 3", "  ````",
        "~~~python3 title", "d = 4", "~~~",
        "```{code-block} python", ":caption: x", "e = 5", "```",
    ])
    blocks = extract("x.md", text)
    assert [(b.line, b.code, b.skipped) for b in blocks] == [
        (2, "a = 1\n", False), (7, "fragment(\n", True),
        (15, "b = 2\n```\nc = 3\n", False), (20, "d = 4\n", False), (24, "e = 5\n", False)]


@needs_docs
def test_examples_are_found():
    """The extraction sees the documentation's examples and markers stay rare."""
    assert "README.md" in BLOCKS and "docs/quickstart.md" in BLOCKS, sorted(BLOCKS)
    blocks = [b for file_blocks in BLOCKS.values() for b in file_blocks]
    skipped = [b for b in blocks if b.skipped]
    assert len(skipped) * 5 <= len(blocks), ["%s:%d" % (b.path, b.line) for b in skipped]


@needs_docs
def test_every_public_name_in_the_api_reference():
    import beanstalkc_fast.asyncio
    with open(os.path.join(ROOT, "docs", "api.md"), encoding="utf-8") as f:
        text = f.read()
    # top-level names only (beanstalkc_fast.worker.Release is documented beside Worker)
    documented = set(re.findall(r"^\.\. auto(?!module)\w+:: beanstalkc_fast\.(\w+)\s*$",
                                text, re.M))
    assert set(beanstalkc_fast.__all__) - documented == set()
    assert documented - set(beanstalkc_fast.__all__) == set()
    pages = "".join(open(os.path.join(ROOT, "docs", name), encoding="utf-8").read()
                    for name in sorted(os.listdir(os.path.join(ROOT, "docs")))
                    if name.endswith(".md"))
    in_asyncio = set(re.findall(r"^\.\. auto\w+:: beanstalkc_fast\.asyncio\.(\w+)\s*$", pages,
                                re.M))
    assert in_asyncio == set(beanstalkc_fast.asyncio.__all__)


@pytest.fixture(params=["cython", "python"], ids=["cython-core", "python-core"])
def core_env(request):
    """The environment that makes an example process use the core ``request.param``."""
    load_core(request.param)       # skips (or fails, when the extension is required) without it
    env = dict(os.environ)
    env.pop("BEANSTALKC_FAST_PUREPYTHON", None)
    if request.param == "python":
        env["BEANSTALKC_FAST_PUREPYTHON"] = "1"
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(beanstalkc_fast.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return request.param, env


@pytest.mark.server
@pytest.mark.parametrize("path", RUN_FILES)
def test_examples_run(path, core_env):
    name, env = core_env
    port = free_port()
    proc = start_beanstalkd(["-l", "127.0.0.1", "-p", str(port)])
    try:
        check = subprocess.run(
            [sys.executable, "-c", "import beanstalkc_fast as b; print(b.IMPLEMENTATION)"],
            env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert check.stdout.strip() == name, check.stdout + check.stderr
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "--run", path, str(port)],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        stop_beanstalkd(proc)
    assert run.returncode == 0, "%s (%s core)\n%s\n%s" % (path, name, run.stdout[-4000:],
                                                         run.stderr[-4000:])
