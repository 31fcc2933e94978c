"""`jupyter codecomp`: build and manage models, and complete code outside JupyterLab.

    jupyter codecomp model build|list|info|remove [NAME]
    jupyter codecomp complete FILE|- [--cursor MARKER] [--n K] [--mode line|block]
    jupyter codecomp eval NOTEBOOK_OR_DIR... (see jupyter_codecomp.tools.evaluation)

Every failure prints one line with its cause and the command that fixes it; exit status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jupyter_core.application import JupyterApp
from rich.console import Console
from rich.table import Table
from traitlets import Bool, Enum, Int, Unicode

from .. import __version__
from ..config import CodecompConfig
from ..errors import CodecompError
from ..models.recipes import DEFAULT_MODEL, available_recipes, get_recipe
from ..models.store import ModelStore

console = Console(stderr=True)
CURSOR = "<CURSOR>"


class _Base(JupyterApp):
    version = __version__
    # The same settings as the server: jupyter_server_config.py and the command line.
    config_file_name = "jupyter_server_config"
    classes = [CodecompConfig]
    aliases = {
        "model": "CodecompConfig.model",
        "cache-dir": "CodecompConfig.cache_dir",
        "device": "CodecompConfig.device",
        "threads": "CodecompConfig.threads",
    }
    flags = {}

    @property
    def settings(self) -> CodecompConfig:
        return CodecompConfig(parent=self)

    @property
    def store(self) -> ModelStore:
        return ModelStore(self.settings.cache_dir)

    def start(self):
        if self.subapp is not None:
            return self.subapp.start()
        try:
            self.run()
        except CodecompError as exc:
            console.print(f"[red]error:[/] {exc.message}")
            if exc.fix:
                console.print(f"[bold]fix:[/] {exc.fix}")
            self.exit(1)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            self.exit(130)

    def run(self):
        raise NotImplementedError

    def _name_argument(self) -> str:
        return self.extra_args[0] if self.extra_args else self.settings.model


class ModelBuild(_Base):
    name = "jupyter-codecomp-model-build"
    description = "Download, convert and export a model into the cache (idempotent)."
    force = Bool(False, help="Rebuild even when a valid build exists.").tag(config=True)
    export_device = Enum(["cpu", "cuda"], "cpu", help="Export precision target.").tag(config=True)
    flags = {"force": ({"ModelBuild": {"force": True}}, "Rebuild even when a valid build exists.")}
    aliases = {**_Base.aliases, "target": "ModelBuild.export_device"}

    def run(self):
        from ..models.builder import build_model

        name = self.extra_args[0] if self.extra_args else DEFAULT_MODEL
        build_model(get_recipe(name), self.store, device=self.export_device, force=self.force,
                    console=console)


class ModelList(_Base):
    name = "jupyter-codecomp-model-list"
    description = "List recipes and built models."

    def run(self):
        built = {m.manifest.name: m for m in self.store.list()}
        table = Table(title=f"models (cache: {self.store.cache_dir})")
        for column in ("name", "built", "size", "description"):
            table.add_column(column)
        for name, recipe in sorted(available_recipes().items()):
            model = built.get(name)
            table.add_row(
                name + (" (default)" if name == DEFAULT_MODEL else ""),
                f"{model.manifest.precision}, {model.manifest.device}" if model else "no",
                f"{model.size_bytes / 1e6:.0f} MB" if model else "",
                recipe.description,
            )
        for name, model in sorted(built.items()):  # fine-tuned models: no recipe of their own
            if name not in available_recipes():
                table.add_row(name, f"{model.manifest.precision}, {model.manifest.device}",
                              f"{model.size_bytes / 1e6:.0f} MB",
                              f"fine-tuned from {model.manifest.finetune.get('base', '?')}")
        Console().print(table)


class ModelInfo(_Base):
    name = "jupyter-codecomp-model-info"
    description = "Show a built model's manifest (checked)."

    def run(self):
        model = self.store.resolve(self._name_argument())
        info = {"path": str(model.path), "size_bytes": model.size_bytes, **model.manifest.to_json()}
        print(json.dumps(info, indent=2))


class ModelRemove(_Base):
    name = "jupyter-codecomp-model-remove"
    description = "Remove a built model from the cache."

    def run(self):
        name = self._name_argument()
        removed = self.store.remove(name)
        if not removed:
            raise CodecompError(f"model {name!r} is not built", fix="jupyter codecomp model list")
        for path in removed:
            console.print(f"removed {path}")


class _Group(_Base):
    """A command made of subcommands: alone, it lists them."""

    def run(self):
        self.print_subcommands()
        self.exit(2)


class ModelApp(_Group):
    name = "jupyter-codecomp-model"
    description = "Manage models: build, list, info, remove."
    subcommands = {
        "build": (ModelBuild, ModelBuild.description),
        "list": (ModelList, ModelList.description),
        "info": (ModelInfo, ModelInfo.description),
        "remove": (ModelRemove, ModelRemove.description),
    }


class CompleteApp(_Base):
    name = "jupyter-codecomp-complete"
    description = (
        f"Complete a file (or - for stdin) at the cursor marker {CURSOR} (default: at the end)."
    )
    cursor = Unicode(CURSOR, help="The marker that stands for the cursor.").tag(config=True)
    n = Int(1, help="Number of alternatives.").tag(config=True)
    mode = Enum(["auto", "line", "block"], "auto").tag(config=True)
    max_new_tokens = Int(0, help="Token cap (0: the configured default).").tag(config=True)
    as_json = Bool(False).tag(config=True)
    aliases = {
        **_Base.aliases,
        "cursor": "CompleteApp.cursor",
        "n": "CompleteApp.n",
        "mode": "CompleteApp.mode",
        "max-new-tokens": "CompleteApp.max_new_tokens",
    }
    flags = {"json": ({"CompleteApp": {"as_json": True}}, "Print the whole reply as JSON.")}

    def run(self):
        from ..completion.protocol import CompletionRequest
        from ..completion.service import ServiceLoader

        # Input piped in needs no `-`: `cat x.py | jupyter codecomp complete`.
        name = self.extra_args[0] if self.extra_args else ("-" if not sys.stdin.isatty() else "")
        if not name:
            raise CodecompError("no input", fix="jupyter codecomp complete FILE  (or pipe it in)")
        source = self._read(name)
        if not self.extra_args and not source.strip():
            raise CodecompError("no input", fix="jupyter codecomp complete FILE  (or pipe it in)")
        prefix, _, suffix = source.partition(self.cursor)
        if self.cursor not in source:
            prefix, suffix = source, ""
        request = CompletionRequest(
            prefix=prefix, suffix=suffix, n=self.n, mode=self.mode,
            max_new_tokens=self.max_new_tokens or None,
        )
        service = ServiceLoader(self.settings.service_settings()).wait()
        reply = service.complete(request)
        if self.as_json:
            print(json.dumps(reply.to_json(), indent=2))
            return
        for completion in reply.completions:
            print(completion.text)
        t = reply.timings_ms
        console.print(
            f"[dim]{reply.model} on {reply.device}: {reply.context.prompt_tokens} prompt tokens, "
            f"first token {t.first_token:.0f} ms, total {t.total:.0f} ms[/]"
        )

    @staticmethod
    def _read(name: str) -> str:
        if name == "-":
            return sys.stdin.read()
        path = Path(name)
        if not path.is_file():
            raise CodecompError(f"no such file: {name}")
        return path.read_text()


class EvalApp(_Base):
    name = "jupyter-codecomp-eval"
    description = "Measure completion quality on notebooks (see jupyter_codecomp.tools.evaluation)."
    kernel = Bool(False, help="Execute the notebooks in a real kernel: live variables and "
                              "the kernel's own completion as a baseline.").tag(config=True)
    variants = Unicode(
        "product,naive",
        help="Variants, comma-separated: product, naive, cell, or the parts added to the current "
             "cell joined with '+' (above, below, variables); options after '/', e.g. "
             "product/budget_above=1500 (see jupyter_codecomp.tools.evaluation).",
    ).tag(config=True)
    kinds = Unicode("line,mid,block",
                    help="Task kinds, comma-separated: line, mid, block.").tag(config=True)
    mode = Enum(["auto", "line", "block"], "auto",
                help="Completion mode of every request; auto is what the editor asks for.",
                ).tag(config=True)
    out = Unicode("codecomp-eval", help="Folder for results.json and the charts.").tag(config=True)
    seed = Int(0).tag(config=True)
    tasks_per_notebook = Int(40, help="Tasks drawn per notebook and kind group; a path given "
                                      "as PATH:N draws N from each of its notebooks.",
                             ).tag(config=True)
    cell_timeout = Int(60, help="Seconds a notebook cell may run.").tag(config=True)
    shard = Unicode("1/1", help="K/N: run the K-th of N parts of the tasks (whole notebooks, "
                                "balanced), for N processes side by side; merge their "
                                "results.json with benchmarks/quality_tables.py.").tag(config=True)
    flags = {"kernel": ({"EvalApp": {"kernel": True}}, kernel.help)}
    aliases = {
        **_Base.aliases,
        "variants": "EvalApp.variants",
        "kinds": "EvalApp.kinds",
        "mode": "EvalApp.mode",
        "out": "EvalApp.out",
        "seed": "EvalApp.seed",
        "tasks-per-notebook": "EvalApp.tasks_per_notebook",
        "cell-timeout": "EvalApp.cell_timeout",
        "shard": "EvalApp.shard",
    }

    def run(self):
        from rich.progress import Progress

        from ..completion.service import ServiceLoader
        from .eval_report import print_report, write_json, write_outputs
        from .evaluation import KINDS, evaluate, notebook_counts, parse_variant

        notebooks = notebook_counts(self.extra_args, self.tasks_per_notebook)
        if not notebooks:
            raise CodecompError("no notebooks given",
                                fix="jupyter codecomp eval NOTEBOOK_OR_DIR...")
        parsed = {}
        for variant in _listed(self.variants):
            try:
                parsed[variant] = parse_variant(variant, kernel=self.kernel)
            except ValueError as exc:
                raise CodecompError(f"unknown variant part {exc.args[0]!r} in {variant!r}",
                                    fix="use product, naive, cell, or above, below, variables "
                                        "joined with '+', options as /field=value") from None
        kinds = tuple(_choices(self.kinds, KINDS, "kind"))
        shard = self._shard()
        variants = [v for v in parsed if self.kernel or "variables" not in parsed[v].parts]
        if len(variants) < len(parsed):
            console.print("[yellow]the variables variants need --kernel; skipped[/]")
        settings = self.settings
        # Each variant has its KV cache, as each notebook has in the server: with fewer slots
        # than variants every request would evict the next one's and start cold.
        settings.kv_cache_slots = max(settings.kv_cache_slots, len(variants))
        service = ServiceLoader(settings.service_settings()).wait()
        with Progress(console=console) as progress:
            report = evaluate(service, notebooks, variants=variants, kernel=self.kernel,
                              seed=self.seed, per_notebook=self.tasks_per_notebook,
                              cell_timeout=self.cell_timeout, kinds=kinds, mode=self.mode,
                              progress=progress, checkpoint=lambda partial: write_json(
                                  partial, Path(self.out)), shard=shard)
        json_path, png_path = write_outputs(report, Path(self.out))
        print_report(report, Console(width=max(160, Console().width)), console)
        console.print(f"wrote {json_path} and {png_path}")

    def _shard(self) -> tuple[int, int]:
        k, _, n = self.shard.partition("/")
        if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
            raise CodecompError(f"--shard {self.shard!r} is not K/N with 1 <= K <= N",
                                fix="e.g. --shard 1/2 in one process and --shard 2/2 in another")
        return int(k), int(n)


def _listed(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _choices(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = _listed(text)
    unknown = set(chosen) - set(allowed)
    if unknown:
        raise CodecompError(f"unknown {what} {sorted(unknown)[0]!r}",
                            fix=f"choose from {', '.join(allowed)}")
    return chosen


class CodecompApp(_Group):
    name = "jupyter-codecomp"
    description = "Local code completion for Jupyter: models, one-off completions, evaluation."
    subcommands = {
        "model": (ModelApp, ModelApp.description),
        "complete": (CompleteApp, CompleteApp.description),
        "eval": (EvalApp, EvalApp.description),
        "serve": ("jupyter_codecomp.tools.serve.ServeApp",
                  "Serve a model to many Jupyter servers (llama.cpp); prints the engine_url."),
        # A string: the fine-tuning app imports this module's _Base.
        "finetune": ("jupyter_codecomp.tools.finetune_app.FinetuneApp",
                     "Fine-tune a model on notebooks (LoRA) into a new model in the cache."),
    }


def main():
    CodecompApp.launch_instance()

