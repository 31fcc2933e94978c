"""Post-processing: where a generated completion ends, what of it goes in at the cursor, and how
sure the model was of it.

- `lexer`: just enough of Python's lexer for brackets, strings and comments;
- `rules`: the trimmer's rules, one function per role, as lists (`PRODUCT_RULES`, `NAIVE_RULES`);
- `trimmer`: `Trimmer`, the one lexer pass that applies them; `resolve_mode` for `auto`;
- `confidence`: a completion's confidence from its tokens' probabilities.
"""

from .confidence import confidence, kept_logprobs
from .rules import NAIVE_RULES, PRODUCT_RULES
from .trimmer import Trimmed, Trimmer, is_empty_line, is_scaffolding, resolve_mode

__all__ = [
    "NAIVE_RULES", "PRODUCT_RULES", "Trimmed", "Trimmer", "confidence", "is_empty_line",
    "is_scaffolding", "kept_logprobs", "resolve_mode",
]
