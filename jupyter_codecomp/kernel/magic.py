"""`%complete` and `%%complete`: the completion pipeline inside any IPython kernel.

The context is the kernel's own: its input history (`In`) stands for the cells above and its
namespace gives the variables block, through the same probe the server sends to kernels.
The engine runs in-process, loaded once per kernel, with the server's configuration and cache.
"""

from __future__ import annotations

import difflib
import linecache
import re
import sys
import traceback

from IPython.core.error import UsageError
from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..completion.context import Variables
from ..completion.protocol import MAX_ALTERNATIVES, MAX_NEW_TOKENS, Cell, CompletionRequest
from ..completion.service import ServiceLoader
from ..config import CodecompConfig, load_jupyter_config
from ..errors import CodecompError
from .variables import format_variables, inspect_namespace

HISTORY_CELLS = 20
FIX_ALTERNATIVES = 2
DIM, BOLD_GREEN, RED, RESET = "\x1b[2m", "\x1b[1;32m", "\x1b[31m", "\x1b[0m"
_loader: ServiceLoader | None = None


def loader() -> ServiceLoader:
    """One engine per kernel, configured like the server (jupyter_server_config.py)."""
    global _loader
    if _loader is None:
        _loader = ServiceLoader(CodecompConfig(config=load_jupyter_config()).service_settings())
    return _loader


@magics_class
class CompleteMagics(Magics):
    @magic_arguments()
    @argument("-n", type=int, default=1, help=f"number of alternatives (1..{MAX_ALTERNATIVES})")
    @argument("--insert", action="store_true", help="put the result into the next cell")
    @argument("--block", action="store_true", help="allow a multi-line completion")
    @argument("--max-tokens", type=int, default=None, help="cap on generated tokens")
    @argument("--fix", action="store_true", help="propose a fix for the last exception's cell")
    @argument("--context", action="store_true", help="show exactly what the model sees")
    @argument("--status", action="store_true", help="show the model, device and load state")
    @argument("code", nargs="*", help="the code to complete (the rest of the line, verbatim)")
    @line_cell_magic
    def complete(self, line: str, cell: str | None = None):
        """Complete code with the local model.

            %complete df.groupby(          complete a line
            %complete -n 3 plt.            three alternatives
            %%complete                     complete (or generate from a comment) the cell body
            %complete --fix                fix the cell that raised the last exception
            %complete --context CODE       what the model would see
            %complete --status             model, device, load state
        """
        options, code = split_options(line)
        args = parse_argstring(self.complete, options)  # bad options: IPython prints the usage
        if not 1 <= args.n <= MAX_ALTERNATIVES:
            raise UsageError(f"-n must be between 1 and {MAX_ALTERNATIVES}")
        if args.max_tokens is not None and not 1 <= args.max_tokens <= MAX_NEW_TOKENS:
            raise UsageError(f"--max-tokens must be between 1 and {MAX_NEW_TOKENS}")
        try:
            if args.status:
                return self._status()
            code = cell if cell is not None else code
            if args.fix:
                return self._fix(args)
            if not code.strip():
                raise UsageError("nothing to complete: %complete CODE, or %%complete with a body")
            request = self._request(code, args, block=args.block or cell is not None)
            if args.context:
                return self._context(request)
            self._complete(request, args)
        except CodecompError as exc:
            print(f"codecomp: {exc.message}" + (f"\n  fix: {exc.fix}" if exc.fix else ""),
                  file=sys.stderr)
        except KeyboardInterrupt:
            print("codecomp: interrupted", file=sys.stderr)

    # --- actions ------------------------------------------------------------------------------

    def _complete(self, request: CompletionRequest, args) -> None:
        service = self._service()
        reply = service.complete(request, namespace_variables(self.shell))
        texts = [c.text for c in reply.completions if c.text]
        if not texts:
            print("codecomp: the model has no suggestion here")
            return
        for i, text in enumerate(texts):
            label = f"[{i + 1}] " if len(texts) > 1 else ""
            print(f"{label}{DIM}{request.prefix}{RESET}{BOLD_GREEN}{text}{RESET}")
        if args.insert:
            self.shell.set_next_input(request.prefix + texts[0], replace=False)

    def _fix(self, args) -> None:
        failed = last_failure(self.shell)
        if failed is None:
            raise CodecompError("no exception to fix yet",
                                fix="run the failing cell, then %complete --fix")
        source, error = failed
        print(f"{DIM}{error}{RESET}")
        service = self._service()
        request = fix_request(source, error, kernel_history(self.shell),
                              service.settings.max_new_tokens_limit)
        reply = service.complete(request, namespace_variables(self.shell))
        fixed = proposed_fix([c.text for c in reply.completions], source)
        if fixed is None:
            print("codecomp: the model proposes no change")
            return
        for line in difflib.unified_diff(source.rstrip().splitlines(), fixed.splitlines(),
                                         "cell", "proposed", lineterm=""):
            color = BOLD_GREEN if line.startswith("+") else RED if line.startswith("-") else ""
            print(f"{color}{line}{RESET if color else ''}")
        if args.insert:
            self.shell.set_next_input(fixed, replace=False)

    def _context(self, request: CompletionRequest) -> None:
        variables = namespace_variables(self.shell)
        report = self._service().context_report(request, variables)
        print(f"model {report['model']}, mode {report['mode']}, "
              f"{report['prompt_tokens']} prompt tokens, {report['cells_used']} cells used, "
              f"{report['cells_dropped']} left out, {report['variables']} variables")
        for part in report["parts"]:
            where = f" #{part['index']}" if part["index"] is not None else ""
            print(f"\n--- {part['kind']}{where} ({part['tokens']} tokens)")
            print(part["text"].rstrip())

    def _status(self) -> None:
        status = loader().status()
        if status["state"] == "idle":
            status["state"] = "not loaded yet (loads on first use)"
        for key in ("state", "model", "device", "providers", "load_seconds", "error", "fix"):
            if status.get(key) not in (None, []):
                print(f"{key:>12}: {status[key]}")

    # --- context ------------------------------------------------------------------------------

    def _service(self):
        return loader().wait()

    def _request(self, code: str, args, *, block: bool) -> CompletionRequest:
        return CompletionRequest(prefix=code, cells=kernel_history(self.shell), n=args.n,
                                 mode="block" if block else "line", max_new_tokens=args.max_tokens)


def kernel_history(shell) -> tuple[Cell, ...]:
    """Earlier inputs of this kernel, oldest first, without magics and this very cell."""
    inputs = list(shell.user_ns.get("In", []))[1:-1]
    cells = [Cell("code", src) for src in inputs if src.strip() and "get_ipython()" not in src]
    return tuple(cells[-HISTORY_CELLS:])


def namespace_variables(shell) -> Variables:
    variables = inspect_namespace(shell.user_ns, hidden=shell.user_ns_hidden)
    return Variables(format_variables(variables), len(variables), "in-process")


def fix_request(source: str, error: str, history: tuple[Cell, ...],
                token_limit: int) -> CompletionRequest:
    """The failing cell quoted as a commented "buggy version", the model asked for the fixed one.
    Measured on the default model: the plain cell followed by its error gets the cell back
    unchanged. Two alternatives: where the greedy one repeats the cell, the second often fixes
    it (benchmarks/fix_quality.py: 11 -> 12 of 15 fixed; a third adds only wrong fixes)."""
    # The failing cell is quoted below, not repeated as a cell above.
    history = tuple(c for c in history if c.source.strip() != source.strip())
    quoted = "\n".join(f"# {line}" for line in source.rstrip().splitlines())
    prefix = f"# Buggy version (raises {error}):\n{quoted}\n\n# Fixed version:\n"
    return CompletionRequest(prefix=prefix, cells=history, mode="block", n=FIX_ALTERNATIVES,
                             max_new_tokens=min(token_limit, 32 + 2 * len(source.split())))


def proposed_fix(alternatives: list[str], source: str) -> str | None:
    """The first alternative that changes the cell and parses, or None."""
    for text in alternatives:
        fixed = uncomment(text.strip("\n"))
        if fixed.strip() and fixed.strip() != source.strip() and _parses(fixed):
            return fixed
    return None


def _parses(code: str) -> bool:
    """Valid cell syntax, magics included."""
    try:
        compile(TransformerManager().transform_cell(code), "<fix>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


_OPTIONS = re.compile(r"\s*(?:(?:-n|--max-tokens)\s+\S+|--?[A-Za-z][\w-]*)(?=\s|$)")


def split_options(line: str) -> tuple[str, str]:
    """Leading options, and the code after them exactly as typed (trailing spaces matter)."""
    end = 0
    while match := _OPTIONS.match(line, end):
        end = match.end()
    return line[:end], line[end:].lstrip(" ") if end else line.lstrip(" ")


def uncomment(code: str) -> str:
    """The model may go on quoting code as comments: take the quote off when every line has it."""
    lines = code.splitlines()
    if lines and all(line.startswith("# ") or not line.strip() for line in lines):
        return "\n".join(line[2:] for line in lines)
    return code


def last_failure(shell) -> tuple[str, str] | None:
    """The source of the cell that raised the last exception, and the exception as one line."""
    error = getattr(sys, "last_value", None)
    if error is None:
        return None
    summary = traceback.format_exception_only(type(error), error)[-1].strip()
    tb = error.__traceback__
    while tb is not None:  # the outermost frame that runs a cell is the cell that raised
        filename = tb.tb_frame.f_code.co_filename
        if _is_cell(shell, filename):
            return "".join(linecache.getlines(filename)), summary
        tb = tb.tb_next
    inputs = shell.user_ns.get("In", [])
    return (inputs[-2], summary) if len(inputs) >= 2 else None


def _is_cell(shell, filename: str) -> bool:
    names = getattr(shell.compile, "_filename_map", {})
    return filename in names or filename.startswith("<ipython-input-")
