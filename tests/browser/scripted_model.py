"""A Jupyter server extension for the browser tests that need exact ghost text: it swaps the
codecomp model for the scripted `FakeEngine`, which continues `PROGRAM` from whatever line of it
the cursor is on. Loaded with `--ServerApp.jpserver_extensions` next to jupyter_codecomp, from
this folder on PYTHONPATH (labdriver.start_lab(scripted=True))."""

from __future__ import annotations

import os

from jupyter_codecomp.completion.fake_engine import FakeEngine
from jupyter_codecomp.completion.service import CompletionService, ServiceLoader
from jupyter_codecomp.models.recipes import PromptFormat

PROGRAM = [
    "total = compute(alpha, beta)",
    "print(total)",
    "report = summarize(total, width=80)",
]
# A line the engine is unsure of: its tokens get a low probability (confidence 0.05).
UNSURE = "guess = maybe(alpha)"
FIM = PromptFormat(fim=True, fim_prefix="<|fim_prefix|>", fim_suffix="<|fim_suffix|>",
                   fim_middle="<|fim_middle|>", stop_tokens=("<|endoftext|>",))
# Seconds per prompt token of a warm prefill (the test of a slow warm sets it).
PREFILL_DELAY = float(os.environ.get("CODECOMP_TEST_PREFILL_DELAY", "0"))


class ScriptedEngine(FakeEngine):
    """FakeEngine that knows the healed text (so the script continues the typed line) and gives
    its tokens a high probability (confidence near 1: the ghost text is shown)."""

    heal = ""

    def generate(self, prompt_ids, *, heal="", **options):
        self.heal = heal
        result = super().generate(prompt_ids, heal=heal, **options)
        prompt = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        line = prompt.split("<|fim_suffix|>")[0].rsplit("\n", 1)[-1]
        unsure = line.startswith(UNSURE.split(" ")[0])
        for candidate in result.candidates:
            candidate.token_logprobs = [-3.0 if unsure else -0.01] * len(candidate.token_ids)
        return result


def continue_program(engine: ScriptedEngine, prompt: str) -> str:
    lines = prompt.split("<|fim_suffix|>")[0].split("\n")
    typed = lines[-1] + engine.heal
    previous = lines[-2] if len(lines) > 1 else ""
    if UNSURE.startswith(typed) and typed.strip():
        return UNSURE[len(typed):] + "\n"
    for i, line in enumerate(PROGRAM):
        if line.startswith(typed) and (typed.strip() or (i and PROGRAM[i - 1] == previous)):
            return line[len(typed):] + "\n" + "\n".join(PROGRAM[i + 1:]) + "\n"
    return ""


def _jupyter_server_extension_points():
    return [{"module": "scripted_model"}]


def _load_jupyter_server_extension(serverapp):
    engine = ScriptedEngine(prefill_delay=PREFILL_DELAY)
    engine.script = lambda prompt: continue_program(engine, prompt)
    serverapp.web_app.settings["codecomp_test_engine"] = engine

    def swap():  # after every extension loaded: the codecomp completer exists
        completer = serverapp.web_app.settings["codecomp"]
        settings = completer.settings.service_settings()
        completer.loader = ServiceLoader.serving(
            CompletionService(engine, FIM, "scripted", settings), settings)

    from tornado.ioloop import IOLoop

    IOLoop.current().add_callback(swap)
