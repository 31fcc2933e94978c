"""`jupyter codecomp finetune NOTEBOOK_OR_DIR... --base NAME --name NEW` (see tools.finetuning)."""

from __future__ import annotations

from traitlets import Bool, Enum, Float, Int, Unicode

from ..errors import CodecompError
from ..models.finetune import Hyperparameters
from ..models.recipes import DEFAULT_MODEL
from .cli import _Base, console

DEFAULTS = Hyperparameters()


class FinetuneApp(_Base):
    name = "jupyter-codecomp-finetune"
    description = ("Fine-tune a model on notebooks with LoRA and add it to the cache under a new "
                   "name: jupyter codecomp finetune NOTEBOOK_OR_DIR... --base NAME --name NEW")
    base = Unicode(DEFAULT_MODEL, help="The built model to start from.").tag(config=True)
    new_name = Unicode("", help="The fine-tuned model's name in the cache.").tag(config=True)
    eval_dir = Unicode("", help="Notebooks to compare base and fine-tuned on (never the "
                                "training notebooks).").tag(config=True)
    eval_tasks = Int(40, help="Eval tasks per notebook.").tag(config=True)
    epochs = Float(DEFAULTS.epochs).tag(config=True)
    lr = Float(DEFAULTS.lr, help="Peak learning rate (AdamW).").tag(config=True)
    lora_rank = Int(DEFAULTS.lora_rank).tag(config=True)
    lora_layers = Int(DEFAULTS.lora_layers, help="Adapters on the top N layers only, the rest "
                                                 "frozen (0: all layers).").tag(config=True)
    batch_tokens = Int(DEFAULTS.batch_tokens,
                       help="Padded tokens per step; also the longest example.").tag(config=True)
    max_steps = Int(0, help="Stop after this many steps (0: the epochs decide).").tag(config=True)
    eval_every = Int(0, help="Steps between validation passes (0: about 8 a run).").tag(config=True)
    validation_examples = Int(DEFAULTS.validation_examples).tag(config=True)
    search = Int(0, help="Run N trials of optuna's TPE search over lr, rank and epochs; keep "
                         "the best by validation loss.").tag(config=True)
    seed = Int(0).tag(config=True)
    train_device = Enum(["cpu", "cuda"], "cpu", help="Where torch trains (and the export "
                                                     "target).").tag(config=True)
    resume = Bool(False, help="Continue the run of the same --name from its last "
                              "checkpoint.").tag(config=True)
    flags = {"resume": ({"FinetuneApp": {"resume": True}}, resume.help)}
    aliases = {
        **_Base.aliases,
        "device": "FinetuneApp.train_device",
        **{opt: f"FinetuneApp.{attr}" for opt, attr in (
            ("base", "base"), ("name", "new_name"), ("eval", "eval_dir"),
            ("eval-tasks", "eval_tasks"), ("epochs", "epochs"), ("lr", "lr"),
            ("lora-rank", "lora_rank"), ("lora-layers", "lora_layers"),
            ("batch-tokens", "batch_tokens"),
            ("max-steps", "max_steps"), ("eval-every", "eval_every"),
            ("validation-examples", "validation_examples"), ("search", "search"),
            ("seed", "seed"))},
    }

    def run(self):
        from .finetuning import FinetuneJob, run_finetune

        if not self.extra_args:
            raise CodecompError("no notebooks given",
                                fix="jupyter codecomp finetune NOTEBOOK_OR_DIR... --name NEW")
        if not self.new_name:
            raise CodecompError("--name is required: the fine-tuned model's name in the cache",
                                fix="add --name NEW, for example --name course-2026")
        for option, value in (("--lr", self.lr), ("--epochs", self.epochs),
                              ("--lora-rank", self.lora_rank),
                              ("--batch-tokens", self.batch_tokens)):
            if value <= 0:
                raise CodecompError(f"{option} must be positive, got {value}")
        if self.max_steps < 0 or self.search < 0:
            raise CodecompError("--max-steps and --search cannot be negative")
        hp = Hyperparameters(
            lr=self.lr, lora_rank=self.lora_rank, lora_layers=self.lora_layers, epochs=self.epochs,
            batch_tokens=self.batch_tokens, max_steps=self.max_steps,
            eval_every=self.eval_every, validation_examples=self.validation_examples,
            seed=self.seed)
        job = FinetuneJob(notebooks=list(self.extra_args), base=self.base, name=self.new_name,
                          hp=hp, device=self.train_device, search=self.search,
                          resume=self.resume, eval_dir=self.eval_dir or None,
                          eval_tasks_per_notebook=self.eval_tasks,
                          threads=self.settings.threads)
        run_finetune(job, self.store, console)
