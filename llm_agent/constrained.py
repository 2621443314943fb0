"""Constrained decoding: the model can only write action lines that the environment's parser accepts.

The grammar of one episode (its own symbols; rows of a batch each get their own)::

    answer   := "HOLD" | order ("\\n" order)*            then the end-of-turn token
    order    := ("BUY" | "SELL") " " SYMBOL " " FRACTION  each symbol at most once (no conflicting orders)
    FRACTION := one of FRACTIONS (0.1 .. 1)

With ``think=True`` free reasoning comes first, up to the first ``</think>`` (the end-of-turn token is not
allowed before it), then at most two blanks or newlines, then the answer. Every completion also has to end
within ``max_new_tokens``: a token is allowed only if the shortest valid ending after it still fits the
budget, so a long reasoning block is closed in time instead of being cut off mid-line.

CPU and transformers: :class:`ActionLogitsProcessor` masks the logits at every step. It walks a prefix trie
of the tokenizer's vocabulary along the characters the grammar allows next (a character automaton), so it
allows multi-character tokens exactly when all their characters fit; allowed sets are cached per automaton
state. GPU and vLLM: :meth:`ActionGrammar.regex` gives the same language to vLLM's guided decoding, except
"each symbol once" (a regular expression cannot remember the symbols used; a conflicting pair of orders stays
possible there and the environment counts it invalid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from llm_agent.prompts import THINK_CLOSE, THINK_OPEN
from market_env.actions import BUY, SELL

if TYPE_CHECKING:
    from llm_agent.models import LoadedModel

__all__ = [
    "FRACTIONS",
    "ActionConstraint",
    "ActionGrammar",
    "ActionLogitsProcessor",
    "TokenVocabulary",
    "action_constraint",
    "token_vocabulary",
]

FRACTIONS = ("0.1", "0.2", "0.25", "0.3", "0.4", "0.5", "0.6", "0.7", "0.75", "0.8", "0.9", "1")
HOLD_KEY = "\x00HOLD"  # the HOLD line's key in a state's set of used keys (no ticker contains NUL)
LEAD_CHARS = " \n"  # allowed between </think> and the first action line
MAX_LEAD = 2
DONE = ("done",)

# States are hashable tuples, so the allowed token sets can be cached per state:
#   ("think", k)                    inside reasoning, k characters of "</think>" matched so far
#   ("answer", node, used, lead)   at a node of the line trie; used: keys of the finished lines;
#                                  lead: blanks still allowed before the first line
#   DONE                           the end-of-turn token was generated
State = tuple


class ActionGrammar:
    """The character automaton of one episode's valid answers (see the module docstring)."""

    def __init__(self, symbols: Sequence[str], fractions: Sequence[str] = FRACTIONS, think: bool = False):
        if not symbols:
            raise ValueError("an action grammar needs at least one symbol")
        self.symbols, self.fractions, self.think = tuple(symbols), tuple(fractions), think
        self._children: list[dict[str, int]] = [{}]
        self._finish: list[dict[str, int]] = [{}]  # key -> fewest characters to the end of a line of that key
        self._line_key: list[str | None] = [None]  # key of the complete line ending at the node
        lines = [("HOLD", HOLD_KEY)] + [
            (f"{side} {symbol} {fraction}", symbol)
            for side in (BUY, SELL)
            for symbol in self.symbols
            for fraction in self.fractions
        ]
        for line, key in lines:
            self._add_line(line, key)
        self.answer_start: State = ("answer", 0, frozenset(), 0)
        self.start: State = ("think", 0) if think else self.answer_start
        self.min_answer = self.min_finish(self.answer_start)
        # the largest min_finish of any state: budgets at or above it never bind (used as a cache key cap)
        self.budget_cap = max(max(len(line) for line, _ in lines) + 1, len(THINK_CLOSE) + self.min_answer)
        self.allowed_cache: dict[tuple, tuple[str, Any]] = {}  # filled by ActionLogitsProcessor

    def _add_line(self, line: str, key: str) -> None:
        path = [0]
        for ch in line:
            node = path[-1]
            child = self._children[node].get(ch)
            if child is None:
                child = len(self._children)
                self._children[node][ch] = child
                self._children.append({})
                self._finish.append({})
                self._line_key.append(None)
            path.append(child)
        self._line_key[path[-1]] = key
        for depth, node in enumerate(path):
            finish = self._finish[node]
            finish[key] = min(finish.get(key, len(line)), len(line) - depth)

    def _open(self, node: int, used: frozenset) -> bool:
        """Whether some line through ``node`` is still allowed (its key not used yet)."""
        return any(key not in used for key in self._finish[node])

    def _newline_state(self, node: int, used: frozenset) -> State | None:
        """The state after a newline at ``node``, if a line ends there and another line may follow."""
        key = self._line_key[node]
        if key is None or key == HOLD_KEY:  # HOLD stands alone
            return None
        used = used | {key, HOLD_KEY}
        return ("answer", 0, used, 0) if self._open(0, used) else None

    def step(self, state: State, ch: str) -> State | None:
        """The state after the character ``ch``, or None when the grammar does not allow it."""
        if state[0] == "think":
            k = state[1] + 1 if ch == THINK_CLOSE[state[1]] else int(ch == "<")  # "<" restarts the match
            return ("answer", 0, frozenset(), MAX_LEAD) if k == len(THINK_CLOSE) else ("think", k)
        if state[0] != "answer":
            return None
        _, node, used, lead = state
        child = self._children[node].get(ch)
        if child is not None and self._open(child, used):
            return ("answer", child, used, 0)
        if node == 0 and lead and ch in LEAD_CHARS:
            return ("answer", 0, used, lead - 1)
        return self._newline_state(node, used) if ch == "\n" else None

    def next_chars(self, state: State) -> list[str]:
        """The characters allowed next (inside reasoning: only the next one of ``</think>``)."""
        if state[0] == "think":
            return [THINK_CLOSE[state[1]]]
        if state[0] != "answer":
            return []
        _, node, used, lead = state
        chars = [ch for ch, child in self._children[node].items() if self._open(child, used)]
        if node == 0 and lead:
            chars += list(LEAD_CHARS)
        if self._newline_state(node, used) is not None:
            chars.append("\n")
        return list(dict.fromkeys(chars))

    def accepts_end(self, state: State) -> bool:
        """Whether the end-of-turn token may come now (a complete answer)."""
        return state[0] == "answer" and self._line_key[state[1]] is not None

    def min_finish(self, state: State) -> int:
        """Fewest tokens to a valid end from ``state``, the end-of-turn token included (one per character)."""
        if state[0] == "think":
            return len(THINK_CLOSE) - state[1] + self.min_answer
        if state[0] != "answer":
            return 0
        _, node, used, _ = state
        return min((n for key, n in self._finish[node].items() if key not in used), default=math.inf) + 1

    def regex(self) -> str:
        """The language as a regular expression for vLLM's guided decoding (see the module docstring)."""
        symbols = "|".join(_escape(s) for s in sorted(self.symbols, key=len, reverse=True))
        fractions = "|".join(_escape(f) for f in sorted(self.fractions, key=len, reverse=True))
        order = f"(?:{BUY}|{SELL}) (?:{symbols}) (?:{fractions})"
        answer = f"(?:HOLD|{order}(?:\\n{order}){{0,{len(self.symbols) - 1}}})"
        if not self.think:
            return answer
        return f"(?:{THINK_OPEN})?[^<]*{THINK_CLOSE}[ \\n]{{0,{MAX_LEAD}}}{answer}"


def _escape(text: str) -> str:
    """Escape regex metacharacters only (symbols hold ``& - _ .``; some engines reject escaped ``&``)."""
    return "".join(f"\\{ch}" if ch in ".^$*+?{}[]\\|()" else ch for ch in text)


@lru_cache(maxsize=512)
def grammar_for(symbols: tuple[str, ...], fractions: tuple[str, ...], think: bool) -> ActionGrammar:
    """One grammar per symbol list: its cache of allowed token sets then serves every day of the episode."""
    return ActionGrammar(symbols, fractions, think)


# ------------------------------------------------------------------------------------------- vocabulary
IDS = ""  # key of the token ids ending at a trie node (no character is the empty string)


@dataclass
class TokenVocabulary:
    """The tokenizer's vocabulary as text, for masking.

    Attributes:
        strings: the text of each token id (invalid UTF-8 bytes replaced by U+FFFD), None for special tokens.
        end_ids: the end-of-turn token ids (the model's EOS ids).
        size: the number of logits to mask (the larger of the model's and the tokenizer's vocabulary).
    """

    strings: list[str | None]
    end_ids: tuple[int, ...]
    size: int
    trie: dict = field(init=False, repr=False)  # nested dicts, one level per character; IDS holds token ids
    closing_ids: list[int] = field(init=False, repr=False)  # tokens that can finish "</think>"
    blocked: list[int] = field(init=False, repr=False)  # special tokens, and ids the tokenizer does not know

    def __post_init__(self) -> None:
        self.trie = {}  # plain dicts: three times faster to build than node objects
        for token_id, text in enumerate(self.strings):
            if not text:
                continue
            node = self.trie
            for ch in text:
                node = node.setdefault(ch, {})
            node.setdefault(IDS, []).append(token_id)
        self.closing_ids = [i for i, s in enumerate(self.strings) if s and THINK_CLOSE[-1] in s]
        unknown = range(len(self.strings), self.size)  # the model's padding rows past the tokenizer
        self.blocked = [i for i, s in enumerate(self.strings) if not s] + list(unknown)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the character a BPE vocabulary uses for each byte."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]  # bytes that stand for themselves
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def token_strings(tokenizer: Any) -> list[str | None]:
    """The text of every token id: byte-level BPE pieces decoded byte-wise, SentencePiece pieces with their
    word-start marker as a blank, added tokens as written; None for special tokens."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    added = tokenizer.added_tokens_decoder
    decoder = _byte_decoder()
    byte_level = any(piece and "Ġ" in piece for piece in pieces)
    strings: list[str | None] = []
    for token_id, piece in enumerate(pieces):
        token = added.get(token_id)
        if token is not None or piece is None:
            strings.append(None if token is None or token.special else token.content)
        elif byte_level and all(ch in decoder for ch in piece):
            strings.append(bytes(decoder[ch] for ch in piece).decode("utf-8", errors="replace"))
        elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:  # SentencePiece byte
            strings.append(bytes([int(piece[3:5], 16)]).decode("utf-8", errors="replace"))
        else:
            strings.append(piece.replace("▁", " "))
    return strings


_VOCABULARIES: dict[int, tuple[Any, TokenVocabulary]] = {}


def token_vocabulary(loaded: LoadedModel) -> TokenVocabulary:
    """The vocabulary of a loaded transformers model, built once per tokenizer (about a second)."""
    tokenizer = loaded.tokenizer
    cached = _VOCABULARIES.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    eos = loaded.model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    end_ids = tuple(t for t in dict.fromkeys([*eos, tokenizer.eos_token_id]) if t is not None)
    size = max(len(tokenizer), loaded.model.get_output_embeddings().weight.shape[0])
    vocabulary = TokenVocabulary(token_strings(tokenizer), end_ids, size)
    _VOCABULARIES[id(tokenizer)] = (tokenizer, vocabulary)
    return vocabulary


# -------------------------------------------------------------------------------------------- processor
class ActionLogitsProcessor:
    """A transformers logits processor: row r of the batch may only continue along ``grammars[r]``.

    It keeps each row's automaton state, advancing it by the token chosen at the previous step, and sets
    every logit the grammar (or the token budget) does not allow to -inf.
    """

    def __init__(self, grammars: Sequence[ActionGrammar], vocabulary: TokenVocabulary, max_new_tokens: int):
        worst = max(g.min_finish(g.start) for g in grammars)
        if max_new_tokens < worst:
            raise ValueError(f"constrained decoding needs max_new_tokens >= {worst}, got {max_new_tokens}")
        self.grammars, self.vocabulary, self.max_new_tokens = list(grammars), vocabulary, max_new_tokens
        self.states: list[State] = [g.start for g in self.grammars]
        self.generated = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.generated:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                self.states[row] = self._advance(self.grammars[row], self.states[row], token)
        budget = self.max_new_tokens - self.generated - 1  # tokens left after the one chosen now
        self.generated += 1
        scores = scores.clone()
        for row, state in enumerate(self.states):
            if state == DONE:
                continue  # finished rows get padding whatever the scores say
            kind, ids = self._allowed(self.grammars[row], state, budget)
            if kind == "ban":
                scores[row, ids] = -math.inf
            else:
                kept = scores[row, ids]
                scores[row] = -math.inf
                scores[row, ids] = kept
        return scores

    def _advance(self, grammar: ActionGrammar, state: State, token: int) -> State:
        if state == DONE or token in self.vocabulary.end_ids:
            return DONE
        for ch in self.vocabulary.strings[token] or "":
            state = grammar.step(state, ch)
            if state is None:  # only a masking bug can get here; the env will flag the output as invalid
                return DONE
        return state

    def _allowed(self, grammar: ActionGrammar, state: State, budget: int) -> tuple[str, Any]:
        """("ban", ids) or ("allow", ids) as a tensor, cached on the grammar per (vocabulary, state, budget
        where it binds): an episode meets the same few states every day."""
        key = (id(self.vocabulary), state, min(budget, grammar.budget_cap))
        cached = grammar.allowed_cache.get(key)
        if cached is None:
            import torch

            if state[0] == "think" and budget >= grammar.min_finish(("think", 0)):
                kind, ids = "ban", self._banned_in_reasoning(grammar, state, budget)
            else:
                kind, ids = "allow", self._walk(grammar, state, budget)
            cached = grammar.allowed_cache[key] = (kind, torch.tensor(ids, dtype=torch.long))
        return cached

    def _banned_in_reasoning(self, grammar: ActionGrammar, state: State, budget: int) -> list[int]:
        """Inside reasoning with budget to spare any text goes, except special tokens and the end of turn,
        and tokens that close ``</think>`` and go on with something the answer grammar does not allow."""
        vocabulary = self.vocabulary
        banned = list(vocabulary.blocked) + list(vocabulary.end_ids)
        for token in vocabulary.closing_ids:
            after: State | None = state
            for ch in vocabulary.strings[token] or "":
                after = grammar.step(after, ch)
                if after is None:
                    break
            if after is None or grammar.min_finish(after) > budget:
                banned.append(token)
        return banned

    def _walk(self, grammar: ActionGrammar, state: State, budget: int) -> list[int]:
        """Every token whose characters the grammar allows from ``state``, leaving a valid end in budget."""
        allowed = list(self.vocabulary.end_ids) if grammar.accepts_end(state) else []
        stack = [(self.vocabulary.trie, state)]
        while stack:
            node, at = stack.pop()
            for ch in grammar.next_chars(at):
                child = node.get(ch)
                if child is None:
                    continue
                after = grammar.step(at, ch)
                if IDS in child and grammar.min_finish(after) <= budget:
                    allowed.extend(child[IDS])
                stack.append((child, after))
        return allowed


# ------------------------------------------------------------------------------------- generate's hook
@dataclass
class ActionConstraint:
    """Constrains each chat of one :func:`llm_agent.generation.generate` call to its episode's grammar.

    Attributes:
        grammars: one per chat, in the order of the chats.
        vocabulary: the tokenizer's vocabulary (transformers backend), None for vLLM (it brings its own).
    """

    grammars: list[ActionGrammar]
    vocabulary: TokenVocabulary | None = None

    def logits_processor(self, rows: Sequence[int], max_new_tokens: int) -> ActionLogitsProcessor:
        """The processor for a forward batch whose row r is chat ``rows[r]``."""
        if self.vocabulary is None:
            raise ValueError("this constraint was built for vLLM; build it from a transformers model")
        return ActionLogitsProcessor([self.grammars[r] for r in rows], self.vocabulary, max_new_tokens)

    def regex(self, row: int) -> str:
        """The regular expression chat ``row`` must match (vLLM guided decoding)."""
        return self.grammars[row].regex()


def action_constraint(
    loaded: LoadedModel,
    symbols_per_chat: Sequence[Sequence[str]],
    *,
    think: bool = False,
    fractions: Sequence[str] = FRACTIONS,
) -> ActionConstraint:
    """The constraint for chats whose episodes trade ``symbols_per_chat[i]``."""
    grammars = [grammar_for(tuple(symbols), tuple(fractions), think) for symbols in symbols_per_chat]
    if loaded.backend == "vllm":  # pragma: no cover - vLLM needs a CUDA GPU, which CI does not have
        return ActionConstraint(grammars)
    return ActionConstraint(grammars, token_vocabulary(loaded))
