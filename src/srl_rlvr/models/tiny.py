"""A tiny random-weight Llama with a real ChatML tokenizer, built offline in about a second.

Unit tests use it in place of SmolLM2: same architecture family, same special tokens and token ids
(``<|endoftext|>``=0, ``<|im_start|>``=1, ``<|im_end|>``=2), same chat template shape, same
pad == eos convention, so code that works on it works on the real model. Its output is noise.
Build one by hand with::

    PYTHONPATH=src python -c "from srl_rlvr.models.tiny import build_tiny_model; print(build_tiny_model('/tmp/tiny'))"
"""

from __future__ import annotations

from pathlib import Path

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]  # list order fixes ids 0, 1, 2, as in SmolLM2
TINY_VOCAB_SIZE = 768  # a cap: the small corpus runs out of merges first, at 619 tokens
DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# SmolLM2-135M-Instruct's template: a default system prompt when none is given, ChatML turns, and
# "<|im_start|>assistant\n" when add_generation_prompt is set.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + DEFAULT_SYSTEM_PROMPT + "<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SENTENCES = [
    DEFAULT_SYSTEM_PROMPT + ".",
    "You are a careful assistant. Solve the problem step by step and give the final answer.",
    "The answer is 42. The final answer is 7. So the result is 128.",
    "Mia has 7 boxes with 6 pens in each. She gives away 9 pens and then buys 15 more.",
    "How many pens does she have now? How many apples does he have left at the end?",
    "Noah starts with 12 marbles. After losing 3, he has 12 - 3 = 9 marbles.",
    "After buying 15 more she has 33 + 15 = 48 pens. The answer is 48.",
    "The farmer picks 24 apples, sells 8 of them, and the number of apples doubles.",
    "A baker makes 5 trays with 12 cookies on each tray, then eats 4 cookies.",
    "Let x be the number of books. Then 3 * x + 2 = 17, so x = 5.",
    "First, compute the product. Next, subtract the cost. Finally, add the rest.",
    "Step 1: 8 * 9 = 72. Step 2: 72 - 10 = 62. Step 3: 62 + 5 = 67.",
    "The sum of the numbers is (1 + 2 + 3) / 2 = 3, and 2^3 = 8, while 10 % 3 = 1.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # prints 5",
    "Emma, Liam, Olivia, Lucas, Ava, Ethan, Sofia, and Leo share stickers, cards, and coins.",
    "user: What is 7 times 6? assistant: 7 times 6 is 42.",
    "Is the statement true or false? It is true because 5 > 3 and 2 < 4.",
    "They have 100 dollars, spend 35 dollars, and earn 20 dollars more: 100 - 35 + 20 = 85.",
]


def _corpus() -> list[str]:
    """A small fixed corpus: chat phrasing, word problems, arithmetic, a bit of code and symbols."""
    lines = list(_SENTENCES)
    lines += [f"{a} + {b} = {a + b}, {a} - {b} = {a - b}, {a} * {b} = {a * b}." for a in range(2, 30) for b in (3, 7)]
    lines.append(" ".join(str(n) for n in range(1000)))
    lines.append("+ - * / = < > ( ) [ ] { } , . : ; ! ? ' \" % ^ # & | _ @ $ \\")
    return lines * 3  # repetition makes common words win merges over one-off pairs


def build_tiny_tokenizer():
    """A byte-level BPE fast tokenizer trained in-process (deterministic, no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits one by one then byte-level, which is how SmolLM2 tokenizes numbers too.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=IM_END,
        unk_token=ENDOFTEXT,
        model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random LlamaForCausalLM + tokenizer to ``path`` and return it.

    hidden 64, 2 layers, 4 heads / 2 kv heads, MLP 128, tied embeddings, 619-token vocab (~114k parameters).
    The same seed gives the same weights and tokenizer; the caller's torch RNG state is left untouched.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=ids[IM_START],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[IM_END],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[IM_START], eos_token_id=ids[IM_END], pad_token_id=ids[IM_END]
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
