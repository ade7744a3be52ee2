r"""Sample text from a trained character-level language model.

    python -m experiments.generate --workdir=/tmp/char_lm_lstm --prompt="The " \
        --length=500 --temperature=0.8 --top_k=10 --seed=0

Loads the best checkpoint (lowest validation bpc) of --workdir; refuses a checkpoint
written by another experiment and a prompt with characters outside the model's
vocabulary. --temperature=0 is greedy decoding; --top_k=0 samples from every
character. The same --seed gives the same text. Logic: rnn_jax.apps.lm.generate_text.
"""

from absl import app, flags

from experiments._cli import call, parse_flags
from rnn_jax.apps.lm import generate_text

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of experiments/char_lm.py.")
_PROMPT = flags.DEFINE_string("prompt", "The ", "Text the sample continues.")
_LENGTH = flags.DEFINE_integer("length", 500, "Characters to generate.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Softmax temperature (0 = greedy).")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k most likely characters (0 = all).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed; the same seed gives the same text.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # A refused workdir, prompt or setting is one line on stderr, exit code 2.
    text = call(generate_text, _WORKDIR.value, _PROMPT.value, _LENGTH.value,
                temperature=_TEMPERATURE.value, top_k=_TOP_K.value, seed=_SEED.value)
    print(text)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
