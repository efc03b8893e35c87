"""Tiny random Hugging Face models *with a tokenizer* (a byte-level BPE trained here), for tests that go through text:
lm-eval requests and GGUF files with tokenizer metadata."""

from __future__ import annotations

CORPUS = [
    "The capital of France is Paris.", "The capital of Italy is Rome.", "The capital of Spain is Madrid.",
    "Paris is a city in France.", "Rome is a city in Italy.", "The sky is blue and the grass is green.",
    "A cat sat on the mat.", "The dog ran in the park.", "Water is wet. Fire is hot.", "One, two, three, four.",
    "Question: Is the sky blue? Answer: yes", "Question: Is fire cold? Answer: no",
]
END = "<|endoftext|>"


def train_tokenizer(vocab_size: int = 320):
    """A byte-level BPE (GPT-2 style: no special tokens added to a prompt; ``<|endoftext|>`` is BOS and EOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=END, eos_token=END)


def save_tiny_text_model(family: str, directory, seed: int = 0, **config):
    """A tiny random ``family`` checkpoint (``tests/models/hf_tiny.py``, with ``config`` overrides) whose vocabulary is
    the trained tokenizer's, saved with that tokenizer into ``directory``; return the torch model."""
    from tests.models.hf_tiny import save_tiny, tiny_family_config

    tokenizer = train_tokenizer()
    model_cls, hf_config = tiny_family_config(family)
    end = tokenizer.convert_tokens_to_ids(END)
    for field, value in dict(config, vocab_size=len(tokenizer), bos_token_id=end, eos_token_id=end, pad_token_id=end).items():
        setattr(hf_config, field, value)
    model = save_tiny(model_cls, hf_config, directory, seed)
    tokenizer.save_pretrained(str(directory))
    return model
