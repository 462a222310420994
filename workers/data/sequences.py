"""Sequence datasets of the lecture's second half, generated offline from a seed.

adding and copy are the long-memory benchmarks of recurrent nets; sine is next-sample
prediction for autoregressive models; sentiment needs word order and negation; text is
character-level language modelling on the reference text that ships with Python
(`pydoc_data.topics`) or on a user's .txt; digit_captions spells out an 8x8 digit.

Token sequences are (N, T) ids; their facts go to the model through `extra`: vocab_size,
vocab (printable symbols), sequence_length, per_step (a target at every step), next_sample
(y is x shifted by one) and prompt (where generated samples start).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, ValidationError
from sklearn import datasets as skd

from workers.data.bundle import DataError
from workers.data.registry import DatasetParams, register_dataset

PROMPT_LENGTH = 16


class AddingParams(DatasetParams):
    n: int = Field(2000, ge=8, le=1_000_000, description="number of sequences")
    length: int = Field(30, ge=2, le=100_000, description="sequence length T")

    def values(self) -> int:
        return self.n * (2 * self.length + 1)


@register_dataset("adding", AddingParams,
                  description="the adding problem: T random values and two markers; the target "
                              "is the sum of the two marked values (predicting the mean scores "
                              "MSE 0.167)")
def adding(p: AddingParams):
    rng = np.random.default_rng(p.seed)
    values = rng.uniform(0.0, 1.0, size=(p.n, p.length))
    half = p.length // 2
    first = rng.integers(0, half, size=p.n)
    second = rng.integers(half, p.length, size=p.n)
    markers = np.zeros_like(values)
    rows = np.arange(p.n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=2)  # (N, T, 2)
    y = values[rows, first] + values[rows, second]
    return x.astype(np.float32), y.reshape(-1, 1).astype(np.float32), "regression", {
        "sequence_length": p.length}


class CopyParams(DatasetParams):
    n: int = Field(2000, ge=8, le=1_000_000, description="number of sequences")
    symbols: int = Field(8, ge=2, le=26, description="alphabet size")
    span: int = Field(5, ge=1, le=1000, description="symbols to remember")
    delay: int = Field(20, ge=1, le=100_000, description="steps between the last symbol and "
                                                         "the recall signal, T")

    def values(self) -> int:
        return self.n * 2 * (2 * self.span + self.delay)


@register_dataset("copy", CopyParams,
                  description="the copy task: remember `span` symbols, wait `delay` steps, then "
                              "write them out after the recall signal (a target every step)")
def copy_task(p: CopyParams):
    rng = np.random.default_rng(p.seed)
    length = 2 * p.span + p.delay
    signal = p.symbols + 1  # blank 0, symbols 1..K, recall signal K+1
    symbols = rng.integers(1, p.symbols + 1, size=(p.n, p.span))
    x = np.zeros((p.n, length), dtype=np.int64)
    x[:, :p.span] = symbols
    x[:, p.span + p.delay - 1] = signal
    y = np.zeros_like(x)
    y[:, -p.span:] = symbols
    vocab = ["_", *"abcdefghijklmnopqrstuvwxyz"[:p.symbols], ":"]
    return x.astype(np.float32), y, "classification", {
        "vocab_size": len(vocab), "vocab": vocab, "sequence_length": length, "per_step": True}


class SineParams(DatasetParams):
    n: int = Field(1000, ge=8, le=1_000_000, description="number of series")
    length: int = Field(50, ge=2, le=100_000, description="steps per series")
    noise: float = Field(0.1, ge=0.0, le=10.0, description="standard deviation of the noise")
    min_period: float = Field(8.0, gt=1.0, le=1e6, description="shortest period, in steps")
    max_period: float = Field(24.0, gt=1.0, le=1e6, description="longest period, in steps")
    levels: int | None = Field(None, ge=2, le=4096, description="quantize into this many "
                                                                "levels: a softmax over the "
                                                                "next value (language model)")

    def values(self) -> int:
        return 2 * self.n * self.length


@register_dataset("sine", SineParams,
                  description="noisy sine waves of random period and phase; predict the next "
                              "sample from the past (continuous, or quantized with `levels`)")
def sine(p: SineParams):
    if p.max_period < p.min_period:
        raise DataError(("data", "params", "max_period"), "max_period must be >= min_period")
    rng = np.random.default_rng(p.seed)
    period = rng.uniform(p.min_period, p.max_period, size=(p.n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(p.n, 1))
    steps = np.arange(p.length + 1)
    series = np.sin(2 * np.pi * steps / period + phase)
    series += rng.normal(0.0, p.noise, size=series.shape)  # (N, T+1)
    extra = {"sequence_length": p.length, "per_step": True, "next_sample": True}
    if p.levels is None:
        x, y = series[:, :-1, None], series[:, 1:, None]  # (N, T, 1)
        extra["prompt"] = x[0, :PROMPT_LENGTH].tolist()
        return x.astype(np.float32), y.astype(np.float32), "sequence", extra
    span = 1.0 + 3 * p.noise  # the values' range, [-span, span]
    ids = np.clip(np.round((series + span) / (2 * span) * (p.levels - 1)), 0, p.levels - 1)
    ids = ids.astype(np.int64)
    extra.update(vocab_size=p.levels, prompt=ids[0, :PROMPT_LENGTH].tolist())
    return ids[:, :-1].astype(np.float32), ids[:, 1:], "language_model", extra


class SentimentParams(DatasetParams):
    n: int = Field(2000, ge=8, le=1_000_000, description="number of sentences")
    length: int = Field(12, ge=10, le=1000, description="padded length (left-padded)")

    def values(self) -> int:
        return self.n * (self.length + 1)
    contrast: float = Field(1.0, ge=0.0, le=1.0, description="share of 'A but B' sentences, "
                                                             "which a bag of words cannot "
                                                             "classify")
    encoding: Literal["ids", "bag"] = Field("ids", description="ids: word sequences; bag: "
                                                               "word counts for a bag-of-words "
                                                               "baseline")


SUBJECTS = ["food", "service", "movie", "staff", "room", "plot"]
POSITIVE = ["good", "great", "tasty", "lovely", "superb", "fresh"]
NEGATIVE = ["bad", "awful", "bland", "rude", "poor", "stale"]
WORDS = ["<pad>", "the", "was", "not", "really", "very", "but", *SUBJECTS, *POSITIVE, *NEGATIVE]


@register_dataset("sentiment", SentimentParams,
                  description="generated reviews ('the food was not really bad but bland') "
                              "whose label depends on word order and negation, so a bag of "
                              "words cannot solve them")
def sentiment(p: SentimentParams):
    rng = np.random.default_rng(p.seed)
    index = {word: i for i, word in enumerate(WORDS)}
    x = np.zeros((p.n, p.length), dtype=np.int64)
    y = np.zeros(p.n, dtype=np.int64)
    for row in range(p.n):
        words, y[row] = _review(rng, contrast=rng.uniform() < p.contrast)
        x[row, p.length - len(words):] = [index[w] for w in words]  # left-padded
    if p.encoding == "bag":
        counts = np.stack([np.bincount(r, minlength=len(WORDS)) for r in x])[:, 1:]
        return counts.astype(np.float32), y, "binary", {}
    return x.astype(np.float32), y, "binary", {
        "vocab_size": len(WORDS), "vocab": WORDS, "sequence_length": p.length}


def _clause(rng: np.random.Generator, positive: bool) -> tuple[list[str], bool]:
    """[not] [really|very] adjective; returns the words and the clause's sentiment."""
    negated = bool(rng.integers(2))
    words = ["not"] if negated else []
    if rng.integers(2):
        words.append(str(rng.choice(["really", "very"])))
    words.append(str(rng.choice(POSITIVE if positive else NEGATIVE)))
    return words, positive != negated


def _review(rng: np.random.Generator, *, contrast: bool) -> tuple[list[str], int]:
    """'the S was <clause>' or 'the S was <clause> but <clause>'. In the contrast form one
    adjective is positive and one negative, in random order, and the label is the second
    clause's: every bag of words is as likely to be positive as negative."""
    opening = ["the", str(rng.choice(SUBJECTS)), "was"]
    first_positive = bool(rng.integers(2))
    first, label = _clause(rng, first_positive)
    if not contrast:
        return opening + first, int(label)
    second, label = _clause(rng, not first_positive)
    return opening + first + ["but"] + second, int(label)


class TextParams(DatasetParams):
    length: int = Field(64, ge=2, le=4096, description="characters per example, T")
    max_chars: int = Field(200_000, ge=100, le=100_000_000, description="use at most this "
                                                                        "many characters")

    def values(self) -> int:
        return 2 * self.max_chars
    lowercase: bool = Field(False, description="lowercase the corpus (a smaller vocabulary)")


def _corpus() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


@register_dataset("text", TextParams,
                  description="character-level language modelling on the reference text that "
                              "ships with Python (pydoc_data.topics, about 465,000 characters)")
def text(p: TextParams):
    return char_windows(_corpus(), p)


def char_windows(corpus: str, p: TextParams):
    """Non-overlapping windows of T+1 characters: x the first T, y the next T (each shifted by
    one). Disjoint windows keep validation text out of training."""
    corpus = corpus[:p.max_chars]
    corpus = corpus.lower() if p.lowercase else corpus
    count = len(corpus) // (p.length + 1)
    if count < 2:
        raise DataError(("data", "params", "length"), f"the text has {len(corpus)} characters, "
                                                      f"too few for two windows of "
                                                      f"{p.length + 1}; lower length")
    vocab = sorted(set(corpus))
    index = {char: i for i, char in enumerate(vocab)}
    ids = np.array([index[c] for c in corpus[:count * (p.length + 1)]], dtype=np.int64)
    windows = ids.reshape(count, p.length + 1)
    frequency = np.bincount(ids, minlength=len(vocab)) / len(ids)
    unigram = float(np.exp(-(frequency[frequency > 0] * np.log(frequency[frequency > 0])).sum()))
    return windows[:, :-1].astype(np.float32), windows[:, 1:], "language_model", {
        "vocab_size": len(vocab), "vocab": vocab, "sequence_length": p.length, "per_step": True,
        "next_sample": True, "prompt": windows[0, :PROMPT_LENGTH].tolist(),
        "unigram_perplexity": unigram}


def text_file(corpus: str, params: dict):
    """A user's .txt as a character corpus; `data.params` as for the built-in `text`."""
    try:
        p = TextParams.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DataError(("data", "params", *first["loc"]), f"{first['msg']} (a .txt corpus "
                                                           "takes the params of dataset "
                                                           "'text')") from exc
    x, y, task, extra = char_windows(corpus, p)
    return x, y, task, extra, p.seed


DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@register_dataset("digit_captions", DatasetParams,
                  description="scikit-learn's 8x8 digits (1x8x8 images) captioned with their "
                              "spelled-out word, one letter per step ('seven.')")
def digit_captions(p: DatasetParams):
    bunch = skd.load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    vocab = ["_", ".", *sorted(set("".join(DIGIT_WORDS)))]  # padding, end, letters
    index = {char: i for i, char in enumerate(vocab)}
    length = max(len(w) for w in DIGIT_WORDS) + 1
    captions = np.zeros((len(DIGIT_WORDS), length), dtype=np.int64)
    for digit, word in enumerate(DIGIT_WORDS):
        captions[digit, :len(word) + 1] = [index[c] for c in word + "."]
    return x, captions[bunch.target], "classification", {
        "vocab_size": len(vocab), "vocab": vocab, "sequence_length": length, "per_step": True,
        "end_token": 1, "image_shape": [1, 8, 8]}
